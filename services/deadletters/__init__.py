"""Dead letters: messages JetStream gave up on or a consumer terminated, recorded and requeueable.

JetStream announces both as advisories on `$JS.EVENT.ADVISORY.CONSUMER.{MAX_DELIVERIES,
MSG_TERMINATED}.TRANSCRIBE.<consumer>`. The stream TRANSCRIBE_DEADLETTERS keeps those
advisories (see libs.contracts.streams); `capture` turns each into a `dead_letters` row with the
original event, `requeue` puts the work back through the normal paths.
"""
