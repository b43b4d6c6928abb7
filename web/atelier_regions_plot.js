// The region editor's pure parts: the weight curves (as attention/weight_curves.py defines them), the
// JSON state, and the weight-over-steps plot with its axes.
export const CURVES = ["constant", "linear", "cosine", "step", "list"];

export const round = (x) => Math.round(x * 1000) / 1000;
export const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);

export function listValues(weights) {
  const items = Array.isArray(weights) ? weights : String(weights ?? "").split(/[,;]/);
  return items.map((x) => String(x).trim()).filter((x) => x !== "").map(Number).filter(Number.isFinite);
}

// c(p) for progress p in [0, 1].
export function curveAt(box, p) {
  const w0 = Number(box.weight ?? 1);
  const w1 = Number(box.end_weight ?? w0);
  switch (box.curve ?? "constant") {
    case "linear": return w0 + (w1 - w0) * p;
    case "cosine": return w1 + (w0 - w1) * (1 + Math.cos(Math.PI * p)) / 2;
    case "step": return p < Number(box.switch_at ?? 0.5) ? w0 : w1;
    case "list": {
      const v = listValues(box.weights);
      return v.length ? v[Math.min(Math.floor(p * v.length + 0.01), v.length - 1)] : 0;
    }
    default: return w0;
  }
}

export function parseState(text) {
  try {
    const data = JSON.parse(text || "{}");
    const boxes = Array.isArray(data) ? data : Array.isArray(data?.boxes) ? data.boxes : [];
    const size = (v) => (Number(v) > 0 ? Number(v) : 512);
    return { width: size(data?.width), height: size(data?.height), boxes, ok: true };
  } catch {
    return { width: 512, height: 512, boxes: [], ok: false };
  }
}

// Weight (y) over sampling progress (x, first step 0 to last step 1), with ticks and axis titles.
export function drawPlot(canvas, box, color, title) {
  const ctx = canvas.getContext("2d");
  const { width: W, height: H } = canvas;
  const left = 34, right = 8, top = 14, bottom = 26;
  const pw = W - left - right, ph = H - top - bottom;
  ctx.fillStyle = "#1a1a1a";
  ctx.fillRect(0, 0, W, H);
  const ys = box ? Array.from({ length: pw }, (_, i) => curveAt(box, i / (pw - 1))) : [];
  const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
  const y = (v) => top + ph - (v - lo) / (hi - lo || 1) * ph;
  ctx.strokeStyle = "#888";
  ctx.lineWidth = 1;
  ctx.beginPath(); // axes
  ctx.moveTo(left, top); ctx.lineTo(left, top + ph); ctx.lineTo(left + pw, top + ph);
  ctx.stroke();
  ctx.fillStyle = "#aaa";
  ctx.font = "10px sans-serif";
  ctx.textAlign = "right";
  for (const v of [lo, (lo + hi) / 2, hi]) { // y ticks
    ctx.fillText(String(round(v)), left - 4, y(v) + 3);
    ctx.beginPath(); ctx.moveTo(left - 2, y(v)); ctx.lineTo(left, y(v)); ctx.stroke();
  }
  ctx.textAlign = "center";
  for (const p of [0, 0.5, 1]) { // x ticks
    ctx.fillText(String(p), left + p * pw, top + ph + 11);
  }
  ctx.fillText("sampling progress (first step 0 -> last step 1)", left + pw / 2, H - 3);
  ctx.textAlign = "left";
  ctx.fillText(box ? `weight of ${title}` : "weight: select a box", left + 4, 10);
  if (!box) return;
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  ys.forEach((v, i) => (i ? ctx.lineTo(left + i, y(v)) : ctx.moveTo(left, y(v))));
  ctx.stroke();
}

// Keyframes (video models): a box may move over the clip, as attention/region_json.py reads it: the box's own
// x, y, w, h hold at clip fraction 0 (the first frame) unless a keyframe is at 0, each keyframe holds at its
// `at` (1 = the last frame), linear in between; a box without keyframes stays.
export const rectOf = (r) => ({ x: Number(r?.x) || 0, y: Number(r?.y) || 0, w: Number(r?.w) || 0, h: Number(r?.h) || 0 });
export const isMoving = (box) => Array.isArray(box?.keyframes) && box.keyframes.length > 0;
export const keyframeAt = (box, at) => (isMoving(box) ? box.keyframes.find((k) => Number(k?.at) === at) : undefined);

// [{at, rect}] sorted by at: the box (or its keyframe at 0) at 0, then every keyframe (the first of any
// repeated `at`, which the pack refuses anyway).
export function pathOf(box) {
  const frames = new Map();
  for (const k of isMoving(box) ? box.keyframes : []) {
    const at = Number(k?.at);
    if (Number.isFinite(at) && !frames.has(at)) frames.set(at, rectOf(k));
  }
  if (!frames.has(0)) frames.set(0, rectOf(box));
  return [...frames.entries()].sort((a, b) => a[0] - b[0]).map(([at, rect]) => ({ at, rect }));
}
