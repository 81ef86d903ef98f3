from libs.transcript.model import Segment, Transcript, Word

__all__ = ["Segment", "Transcript", "Word"]
