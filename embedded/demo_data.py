"""Demo source tables (`public.recordings`, `contacts`, `campaign_map`).

For the embedded stack and tests only: in production these belong to the user's own database.
"""

from __future__ import annotations

import asyncpg

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS public.campaign_map (
    campaign_id   text PRIMARY KEY,
    campaign_name text NOT NULL
);
CREATE TABLE IF NOT EXISTS public.contacts (
    id    bigint PRIMARY KEY,
    phone text
);
CREATE TABLE IF NOT EXISTS public.recordings (
    id          text PRIMARY KEY,
    contact_id  bigint REFERENCES public.contacts (id),
    campaign_id text,
    location    text NOT NULL,
    started     timestamptz,
    stopped     timestamptz
)
"""
UPSERT_CAMPAIGN = """
INSERT INTO public.campaign_map (campaign_id, campaign_name) VALUES ($1, $2)
ON CONFLICT (campaign_id) DO UPDATE SET campaign_name = EXCLUDED.campaign_name
"""
UPSERT_CONTACT = """
INSERT INTO public.contacts (id, phone) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone
"""
UPSERT_RECORDING = """
INSERT INTO public.recordings (id, contact_id, campaign_id, location, started, stopped)
VALUES ($1, $2, $3, $4, '2026-01-05 09:30:00+00', '2026-01-05 09:30:06+00')
ON CONFLICT (id) DO UPDATE SET location = EXCLUDED.location,
    contact_id = EXCLUDED.contact_id, campaign_id = EXCLUDED.campaign_id
"""

# The demo recording everybody submits first: `recording_id=1001`.
DEMO_RECORDING_ID = "1001"


async def seed(conn: asyncpg.Connection, samples_base_url: str) -> None:
    """Create and fill the demo tables; `samples_base_url` serves `hello_campaign.wav`."""
    base = samples_base_url.rstrip("/")
    async with conn.transaction():
        await conn.execute(CREATE_TABLES)
        await conn.executemany(UPSERT_CAMPAIGN, [("42", "spring_renewals"), ("7", "winback")])
        await conn.executemany(UPSERT_CONTACT, [(1, "+44 20 7946 0018"), (2, "+1 (415) 555-0132")])
        await conn.executemany(
            UPSERT_RECORDING,
            [
                (DEMO_RECORDING_ID, 1, "42", f"{base}/hello_campaign.wav"),
                ("rec-7f3a", 2, "7", f"{base}/calls/2026/rec-7f3a/hello_campaign.wav"),
            ],
        )
