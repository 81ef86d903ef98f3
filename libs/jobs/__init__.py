"""The job catalog: the one owner of `audio_files`, `transcriptions`, `transcription_failures`,
`transcription_chunks` and `ingest_claims`, with all their SQL.

- `record`: the typed `Job` row, its loader, and the one Job -> AudioStored mapping
- `submission`: what ingest writes (claims released, row + AudioStored in one statement)
- `claims`: de-duplication claims of submissions in progress (`ingest_claims`)
- `lifecycle`: what the transcriber moves a job through (processing, completed, failed, chunks)
- `requeue`: the one way to put a finished or stuck job back on the stream
- `views`: read-only views of jobs for the API and operators (status, the list of a key's jobs)
- `deletion`: deleting a job (tombstone + durable object removal; `job_deletions`)
"""
