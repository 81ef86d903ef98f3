"""Dead letters: the one owner of `media_pipeline.dead_letters` (`records`) and the way their
work is put back (`requeue`). The capture process itself is `services/deadletters`."""
