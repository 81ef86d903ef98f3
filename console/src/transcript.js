// The transcript JSON (GET /api/media/transcript/{id}.json) as turns of timed words, and the
// lanes (one per role, or per speaker for diarized mono) the timeline draws.

// A redacted value as the gateway writes it: [CREDIT_CARD], [SSN], ... (maybe with punctuation).
export const REDACTED = /^\[([A-Z][A-Z0-9_]*)\][.,;:!?]*$/;
export const LONG_SILENCE = 5;
const MAX_LANES = 6;

function words(text) {
  return String(text || "").split(/\s+/).filter(Boolean);
}

// Words spread evenly over [start, end]: a transcript without word timings still reads and
// seeks, at the precision it has.
function spread(text, start, end) {
  const parts = words(text);
  const step = parts.length ? Math.max(0, end - start) / parts.length : 0;
  return parts.map((w, i) => ({ text: w, start: start + i * step, end: start + (i + 1) * step }));
}

function timed(list) {
  return list.map((w) => ({ text: String(w.word).trim(), start: Number(w.start), end: Number(w.end) })).filter((w) => w.text);
}

// The words of [start, end) from the transcript's flat word list (sorted by start).
function slice(all, start, end, from) {
  let i = from;
  while (i < all.length && all[i].start < start) i += 1;
  const out = [];
  while (i < all.length && all[i].start < end) { out.push(all[i]); i += 1; }
  return [out, i];
}

export function buildTurns(transcript) {
  const flat = transcript.words ? timed(transcript.words).sort((a, b) => a.start - b.start) : null;
  const turns = [];
  if (transcript.utterances && transcript.utterances.length) {
    for (const u of transcript.utterances) {
      const ws = u.words && u.words.length ? timed(u.words) : spread(u.text, u.start, u.end);
      turns.push({ start: u.start, end: u.end, role: u.role || null, speaker: u.speaker || null, words: ws, approximate: !(u.words && u.words.length) });
    }
  } else {
    const segments = transcript.segments && transcript.segments.length
      ? transcript.segments
      : [{ start: 0, end: transcript.duration || 0, text: transcript.text || "" }];
    let at = 0;
    for (const s of segments) {
      let ws = null;
      if (flat) [ws, at] = slice(flat, s.start, s.end + 1e-6, at);
      const approximate = !ws || !ws.length;
      turns.push({ start: s.start, end: s.end, role: null, speaker: null, words: approximate ? spread(s.text, s.start, s.end) : ws, approximate });
    }
  }
  turns.sort((a, b) => a.start - b.start);
  const lanes = [];
  const laneOf = (t) => t.role || t.speaker || "speech";
  for (const t of turns) {
    t.lane = laneOf(t);
    if (!lanes.includes(t.lane)) lanes.push(t.lane);
  }
  const order = (l) => (l === "agent" ? 0 : l === "customer" ? 1 : 2);
  lanes.sort((a, b) => order(a) - order(b));
  return { turns, lanes: lanes.slice(0, MAX_LANES) };
}

// Seconds two lanes speak at once, and seconds nobody speaks for LONG_SILENCE or more.
export function overlapsAndSilences(turns, duration) {
  const overlaps = [];
  const silences = [];
  let end = 0;
  let lane = null;
  for (const t of turns) {
    if (t.start < end && t.lane !== lane) {
      const to = Math.min(end, t.end);
      if (to - t.start >= 0.2) overlaps.push({ start: t.start, end: to });
    } else if (t.start - end >= LONG_SILENCE) {
      silences.push({ start: end, end: t.start });
    }
    if (t.end > end) { end = t.end; lane = t.lane; }
  }
  if (duration - end >= LONG_SILENCE) silences.push({ start: end, end: duration });
  return { overlaps, silences };
}

// Speech activity per lane, drawn by wavesurfer as one waveform per lane.
export function lanePeaks(turns, lanes, duration, bins) {
  const peaks = lanes.map(() => new Float32Array(bins));
  if (!(duration > 0)) return peaks;
  const scale = bins / duration;
  for (const t of turns) {
    const lane = lanes.indexOf(t.lane);
    if (lane < 0) continue;
    const p = peaks[lane];
    for (const w of t.words) {
      const a = Math.max(0, Math.floor(w.start * scale));
      const b = Math.min(bins - 1, Math.floor(Math.max(w.start, w.end) * scale));
      const level = 0.45 + 0.5 * (((w.text.length * 37) % 11) / 10);
      for (let i = a; i <= b; i += 1) if (p[i] < level) p[i] = level;
    }
  }
  return peaks;
}
