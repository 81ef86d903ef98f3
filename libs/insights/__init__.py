"""Call insights (issue 21): the `insights` table (store.py, its one owner).

services/insights writes a row per completed job it evaluated (categories always, the chat
model's insights when configured); the API, /status, the jobs list and search read them;
deletion and retention remove them with the job."""
