// What the region editor reads from the rest of the graph: regions chained into its `regions` input
// (AtelierRegion nodes and other AtelierBoxRegions, shown read-only) and the size of the latent its
// regions are sampled with (found downstream: the sampler's latent_image source).
import { parseState } from "./atelier_regions_plot.js";

const MAX_DEPTH = 32;

// Connectivity through the node's own methods (getInputNode / getOutputNodes, in every frontend since
// 1.32): frontend 1.58 deprecates reading input.link and output.links directly.
function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

function source(graph, node, inputName) {
  const slot = node?.inputs?.findIndex((i) => i.name === inputName) ?? -1;
  if (slot < 0 || !node.graph) return null;
  return node.getInputNode?.(slot) ?? null;
}

function targets(node) {
  return (node.outputs ?? []).flatMap((_, slot) => (node.graph && node.getOutputNodes?.(slot)) || []);
}

function promptOf(graph, node) {
  const text = widget(source(graph, node, "conditioning"), "text");
  return typeof text === "string" && text.trim() ? text.trim() : `region ${node.id}`;
}

// [{x, y, w, h, label}] of every region chained in, earliest first.
export function chainedRegions(graph, node) {
  const out = [];
  let current = source(graph, node, "regions");
  for (let depth = 0; current && depth < MAX_DEPTH; depth++) {
    if (current.type === "AtelierRegion") {
      const mask = source(graph, current, "mask");
      out.unshift({ x: Number(widget(current, "x")) || 0, y: Number(widget(current, "y")) || 0,
        w: Number(widget(current, "width")) || 0, h: Number(widget(current, "height")) || 0,
        label: mask ? `${promptOf(graph, current)} [mask]` : promptOf(graph, current) });
    } else if (current.type === "AtelierBoxRegions") {
      const boxes = parseState(widget(current, "regions_json")).boxes;
      out.unshift(...boxes.map((b) => ({ x: +b.x || 0, y: +b.y || 0, w: +b.w || 0, h: +b.h || 0, label: String(b.prompt ?? "") })));
    } else {
      break;
    }
    current = source(graph, current, "regions");
  }
  return out;
}

// Each node downstream of this one (its outputs' targets, then theirs, breadth first) until visit returns
// something: that, or null.
function downstream(node, visit) {
  const seen = new Set();
  let frontier = [node];
  for (let depth = 0; frontier.length && depth < MAX_DEPTH; depth++) {
    const next = [];
    for (const n of frontier) {
      if (seen.has(n.id)) continue;
      seen.add(n.id);
      const found = n !== node ? visit(n) : null;
      if (found) return found;
      next.push(...targets(n));
    }
    frontier = next;
  }
  return null;
}

// {width, height} of the latent the sampler fed (through any chain) by this node uses, or null.
export function latentSize(graph, node) {
  return downstream(node, (n) => {
    const latent = source(graph, n, "latent_image");
    const width = Number(widget(latent, "width")), height = Number(widget(latent, "height"));
    return width > 0 && height > 0 ? { width, height } : null;
  });
}

// The widget a video latent node counts its frames in: `length` on every video latent of ComfyUI
// (EmptyHunyuanLatentVideo, EmptyLTXVLatentVideo, Wan22ImageToVideoLatent, WanImageToVideo, LTXVImgToVideo,
// EmptyMiniMaxH3LatentAV, ...); the others for video nodes of other packs.
const FRAME_WIDGETS = ["length", "num_frames", "video_length", "frame_count", "frames"];

// Frames of the latent made by `start` or above it: the first node up its LATENT inputs (through the
// nodes that pass a latent on: TrimVideoLatent, LTXVAddGuide, a first sampler, ...) with a frame count.
function framesAbove(start) {
  const seen = new Set();
  let frontier = [start];
  for (let depth = 0; frontier.length && depth < MAX_DEPTH; depth++) {
    const next = [];
    for (const n of frontier) {
      if (!n || seen.has(n.id)) continue;
      seen.add(n.id);
      for (const name of FRAME_WIDGETS) {
        const frames = Number(widget(n, name));
        if (Number.isFinite(frames) && frames > 0) return frames;
      }
      (n.inputs ?? []).forEach((input, slot) => {
        if (input?.type === "LATENT" && n.graph) next.push(n.getInputNode?.(slot));
      });
    }
    frontier = next;
  }
  return 0;
}

// Frames of the video latent of the sampler fed (through any chain) by this node: more than 1 for a
// video model's latent, 0 for an image (a one-frame clip included) or when none is wired yet.
export function videoFrames(graph, node) {
  return downstream(node, (n) => {
    const latent = source(graph, n, "latent_image");
    const frames = latent ? framesAbove(latent) : 0;
    return frames > 1 ? frames : null;
  }) ?? 0;
}
