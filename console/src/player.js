// The call's timeline: wavesurfer.js drawing one lane per role (speech activity from the word
// timings, so a two-hour call needs no full download or decode and the <audio> element keeps
// streaming with Range requests), with overlaps and long silences marked as regions.
import WaveSurfer from "wavesurfer.js";
import RegionsPlugin from "wavesurfer.js/dist/plugins/regions.esm.js";
import { lanePeaks, overlapsAndSilences } from "./transcript.js";

export const LANE_COLOURS = ["#1f5fa8", "#b0471f", "#2e7d32", "#6a3d9a", "#8d6e00", "#00696f"];

function nonce() {
  const meta = document.querySelector('meta[name="csp-nonce"]');
  return meta ? meta.content : undefined;
}

export function timeline(container, audio, model, duration) {
  const bins = Math.min(4000, Math.max(200, Math.ceil(duration * 2)));
  const peaks = lanePeaks(model.turns, model.lanes, duration, bins);
  const regions = RegionsPlugin.create();
  const wave = WaveSurfer.create({
    container,
    media: audio,
    peaks,
    duration,
    height: 36,
    normalize: false,
    barWidth: 2,
    barGap: 1,
    cursorColor: "#111",
    cursorWidth: 2,
    interact: true,
    cspNonce: nonce(),
    splitChannels: model.lanes.map((_, i) => ({ waveColor: LANE_COLOURS[i % LANE_COLOURS.length], progressColor: "#555", height: 36 })),
    plugins: [regions],
  });
  const marks = overlapsAndSilences(model.turns, duration);
  const add = () => {
    for (const o of marks.overlaps) regions.addRegion({ start: o.start, end: o.end, color: "rgba(200, 0, 0, 0.25)", drag: false, resize: false });
    for (const s of marks.silences) regions.addRegion({ start: s.start, end: s.end, color: "rgba(0, 0, 0, 0.12)", drag: false, resize: false });
  };
  if (wave.getDuration()) add();
  else wave.once("ready", add);
  return { wave, marks, destroy: () => wave.destroy() };
}
