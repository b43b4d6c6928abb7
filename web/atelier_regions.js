// Region editor for AtelierBoxRegions: draw, move, resize and delete boxes on a canvas with the
// image's aspect, edit each box's local prompt and weight curve (labelled fields), see the weight over
// the steps as a plot with axes, and see regions chained in from AtelierRegion nodes (read-only).
// Video mode (the sampler's latent is a video, or a box already has keyframes): each box also shows where
// it ends on the last frame (dashed, draggable and resizable) and its path; a "moving" toggle in a second
// toolbar row adds or removes the box's keyframes. Images see the editor as it always was.
// It only reads and writes the node's regions_json widget; the node works without it (API users
// write the same JSON by hand). Everything it draws sits in one element whose height it reports to
// the node (getMinHeight), so the node grows with it on the classic canvas and in Nodes 2.0.
import { app } from "../../scripts/app.js";
import { CURVES, drawPlot, round, clamp, parseState, isMoving, keyframeAt, pathOf } from "./atelier_regions_plot.js";
import { chainedRegions, latentSize, videoFrames } from "./atelier_regions_graph.js";

const NODE = "AtelierBoxRegions";
const JSON_WIDGET = "regions_json";
const EDITOR_WIDGET = "atelier_region_editor";
const CANVAS_WIDTH = 300;
const PLOT_HEIGHT = 96;
const TOOLBAR_HEIGHT = 26;
const FIELDS_HEIGHT = 112;
const GAPS = 3 * 6 + 8; // three gaps between four rows, padding above and below
const VIDEO_BAR = TOOLBAR_HEIGHT + 6; // video mode: a second toolbar row and its gap
const TAB = 8; // px from a static box's right edge to the centre of its "drag to move" tab (video mode)
const HANDLE = 8; // px around a corner that grabs it for resizing
const MIN_SIZE = 0.02;
const COLORS = ["#e4572e", "#29a35a", "#3e7cb1", "#f3a712", "#a23e98", "#17bebb", "#c1666b", "#7e8d3b"];

const STYLE = `
.atelier-regions-editor { display:flex; flex-direction:column; gap:6px; padding:4px; box-sizing:border-box;
  width:100%; min-width:${CANVAS_WIDTH + 10}px; overflow:hidden; color:var(--input-text, #ddd); font:12px sans-serif; }
.atelier-regions-editor .atelier-regions-toolbar { display:flex; align-items:center; gap:6px; height:${TOOLBAR_HEIGHT}px; }
.atelier-regions-editor .atelier-regions-status { flex:1; opacity:0.8; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.atelier-regions-editor button { background:var(--comfy-input-bg, #222); color:var(--input-text, #ddd);
  border:1px solid var(--border-color, #555); border-radius:4px; padding:2px 8px; cursor:pointer; font-size:11px; }
.atelier-regions-editor button:disabled { opacity:0.45; cursor:default; }
.atelier-regions-editor canvas { display:block; flex:none; align-self:center; box-sizing:content-box;
  border:1px solid var(--border-color, #555); border-radius:4px; }
.atelier-regions-editor .atelier-regions-fields { display:grid; grid-template-columns:auto 1fr auto 1fr;
  gap:4px 6px; align-items:center; height:${FIELDS_HEIGHT}px; }
.atelier-regions-editor .atelier-regions-fields label { color:var(--fg-color, #ccc); opacity:0.85; font-size:11px; white-space:nowrap; }
.atelier-regions-editor .atelier-regions-fields .wide { grid-column:2 / span 3; }
.atelier-regions-editor input, .atelier-regions-editor select { background:var(--comfy-input-bg, #222);
  color:var(--input-text, #ddd); border:1px solid var(--border-color, #555); border-radius:4px;
  padding:2px 4px; font-size:11px; min-width:0; width:100%; box-sizing:border-box; height:22px; }
.atelier-regions-editor input:disabled, .atelier-regions-editor select:disabled { opacity:0.45; }
.atelier-regions-editor .atelier-regions-videobar { display:flex; align-items:center; gap:6px; height:${TOOLBAR_HEIGHT}px; }
.atelier-regions-editor .atelier-regions-videobar label { display:flex; align-items:center; gap:4px; white-space:nowrap;
  cursor:pointer; font-size:11px; }
.atelier-regions-editor .atelier-regions-videobar input[type=checkbox] { width:auto; height:auto; margin:0; }
.atelier-regions-editor .atelier-regions-videoinfo { flex:1; opacity:0.8; white-space:nowrap; overflow:hidden;
  text-overflow:ellipsis; font-size:11px; }
`;

function addStyle() {
  if (document.getElementById("atelier-regions-style")) return;
  document.head.append(Object.assign(document.createElement("style"), { id: "atelier-regions-style", textContent: STYLE }));
}

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

class RegionEditor {
  constructor(node, jsonWidget) {
    this.node = node;
    this.jsonWidget = jsonWidget;
    this.selected = -1;
    this.drag = null;
    this.lastText = null;
    this.ids = []; // one stable id per box (label and colour), kept across edits and deletions
    this.nextId = 1;
    this.chained = [];
    this.frames = 0; // frames of the sampler's video latent; 0 for an image
    this.keepVideo = false; // the user used the "moving" toggle: video mode stays on in this editor
    this.note = "";
    this.build();
    this.refresh();
  }

  build() {
    this.canvas = el("canvas", { className: "atelier-regions-canvas", tabIndex: 0 });
    this.canvas.style.cursor = "crosshair";
    this.canvas.style.touchAction = "none";
    this.status = el("span", { className: "atelier-regions-status" });
    this.useLatent = el("button", { className: "atelier-regions-latent", textContent: "Use latent size",
      title: "Set the aspect (width/height) from the latent the sampler of these regions uses" });
    this.remove = el("button", { className: "atelier-regions-delete", textContent: "Delete box",
      title: "Delete the selected box (or press Delete while the box canvas has focus)" });
    const toolbar = el("div", { className: "atelier-regions-toolbar" }, [this.status, this.useLatent, this.remove]);
    // Video mode only (in the DOM only then): the selected box's "moving" toggle and what its path is.
    this.moving = el("input", { type: "checkbox", className: "atelier-regions-moving" });
    this.videoInfo = el("span", { className: "atelier-regions-videoinfo" });
    this.videoBar = el("div", { className: "atelier-regions-videobar", title:
      "Moving: the box goes from where it is on the first frame (solid) to the dashed box on the last frame. "
      + "Drag or resize either; untick to make the box stay. Shift-drag moves the whole path." }, [
      el("label", { title: "Tick to make the selected box move over the clip, untick to make it stay" },
        [this.moving, document.createTextNode("moving")]),
      this.videoInfo]);

    const input = (cls, props) => el("input", { className: cls, ...props });
    this.prompt = input("atelier-regions-prompt wide", { placeholder: "what goes in this box" });
    this.weight = input("atelier-regions-weight", { type: "number", step: "0.05" });
    this.curve = el("select", { className: "atelier-regions-curve" }, CURVES.map((c) => el("option", { value: c, textContent: c })));
    this.endWeight = input("atelier-regions-end", { type: "number", step: "0.05" });
    this.switchAt = input("atelier-regions-switch", { type: "number", step: "0.05", min: "0", max: "1" });
    this.weights = input("atelier-regions-list wide", { placeholder: "curve 'list': 1, 0.8, 0.5, 0" });
    const label = (text, field) => el("label", { textContent: text, htmlFor: (field.id = `atelier-${Math.random().toString(36).slice(2)}`) });
    this.fields = el("div", { className: "atelier-regions-fields" }, [
      label("Prompt", this.prompt), this.prompt,
      label("Weight", this.weight), this.weight, label("Curve", this.curve), this.curve,
      label("End weight", this.endWeight), this.endWeight, label("Switch at", this.switchAt), this.switchAt,
      label("Weights", this.weights), this.weights,
    ]);
    this.plot = el("canvas", { className: "atelier-regions-plot", width: CANVAS_WIDTH, height: PLOT_HEIGHT });
    this.plot.style.width = `${CANVAS_WIDTH}px`;
    this.plot.style.height = `${PLOT_HEIGHT}px`;
    this.element = el("div", { className: "atelier-regions-editor" }, [toolbar, this.canvas, this.fields, this.plot]);
    this.toolbar = toolbar;

    this.canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onUp(e));
    this.canvas.addEventListener("keydown", (e) => {
      // Only here: the canvas has focus. Keys typed in the fields never reach the graph either.
      if (e.key === "Delete" || e.key === "Backspace") { this.deleteSelected(); e.preventDefault(); }
      e.stopPropagation();
    });
    this.remove.addEventListener("click", () => this.deleteSelected());
    this.useLatent.addEventListener("click", () => this.setAspectFromLatent());
    this.moving.addEventListener("change", () => this.setMoving(this.moving.checked));
    const edit = (key, read) => (e) => {
      const box = this.state.boxes[this.selected];
      if (!box) return;
      box[key] = read(e.target.value);
      this.write();
    };
    this.prompt.addEventListener("input", edit("prompt", (v) => v));
    this.weight.addEventListener("input", edit("weight", Number));
    this.curve.addEventListener("change", edit("curve", (v) => v));
    this.endWeight.addEventListener("input", edit("end_weight", Number));
    this.switchAt.addEventListener("input", edit("switch_at", Number));
    this.weights.addEventListener("input", edit("weights", (v) => v));
    for (const field of [this.prompt, this.weight, this.endWeight, this.switchAt, this.weights, this.curve, this.moving]) {
      field.addEventListener("keydown", (e) => e.stopPropagation());
    }
  }

  get canvasHeight() {
    return Math.round(clamp(CANVAS_WIDTH * this.state.height / this.state.width, 90, 420));
  }

  // Height of everything the editor draws: the node reserves exactly this.
  get height() { // toolbar, box canvas and plot (with their 1px borders), fields, gaps and padding
    return TOOLBAR_HEIGHT + this.canvasHeight + 2 + FIELDS_HEIGHT + PLOT_HEIGHT + 2 + GAPS + (this.video ? VIDEO_BAR : 0);
  }

  // Video mode: the sampler these regions reach samples a video latent (more than one frame), a box
  // already moves (keyframes, e.g. written by hand), or the user used the "moving" toggle here.
  get video() {
    return this.frames > 1 || this.keepVideo || (this.state?.boxes ?? []).some(isMoving);
  }

  colorOf(i) {
    return COLORS[(this.ids[i] - 1) % COLORS.length];
  }

  // Re-read the widget when something else (typing, loading a workflow) changed it, and the chain.
  refresh() {
    this.canvas.dataset.nodeId = String(this.node.id); // ids are given when the node joins a graph
    this.element.dataset.nodeId = String(this.node.id);
    const chained = chainedRegions(app.graph, this.node);
    const chainKey = JSON.stringify(chained);
    const frames = videoFrames(app.graph, this.node);
    const text = this.jsonWidget.value;
    if (text === this.lastText && chainKey === this.chainKey && frames === this.frames) return;
    this.frames = frames;
    this.chained = chained;
    this.chainKey = chainKey;
    if (text !== this.lastText) {
      this.lastText = text;
      const before = this.state?.height / this.state?.width;
      this.state = parseState(text);
      if (this.ids.length !== this.state.boxes.length) { // replaced elsewhere (a loaded workflow): 1..N again
        this.nextId = 1;
        this.ids = this.state.boxes.map(() => this.nextId++);
      }
      this.selected = Math.min(this.selected, this.state.boxes.length - 1);
      if (before !== this.state.height / this.state.width) this.resize();
    }
    this.render();
  }

  resize() {
    if (this.canvas.width !== CANVAS_WIDTH) this.canvas.width = CANVAS_WIDTH; // (setting it clears it)
    if (this.canvas.height !== this.canvasHeight) this.canvas.height = this.canvasHeight;
    this.canvas.style.width = `${CANVAS_WIDTH}px`; // never stretched by the layout: the aspect stays
    this.canvas.style.height = `${this.canvasHeight}px`;
    this.element.style.minHeight = `${this.height}px`;
    this.shownVideo = this.video;
    const node = this.node;
    const need = node.computeSize?.();
    if (need && node.size && (node.size[1] < need[1] || node.size[0] < need[0])) {
      node.setSize?.([Math.max(node.size[0], need[0]), Math.max(node.size[1], need[1])]);
    }
    node.setDirtyCanvas?.(true, true);
  }

  write() {
    const { width, height, boxes } = this.state;
    const text = JSON.stringify({ width, height, boxes }, null, 1);
    this.lastText = text;
    this.jsonWidget.value = text;
    this.jsonWidget.callback?.(text);
    this.node.setDirtyCanvas?.(true, true);
    this.render();
  }

  setAspectFromLatent() {
    const size = latentSize(app.graph, this.node);
    if (!size) {
      this.status.textContent = "no latent with a width/height found downstream";
      return;
    }
    this.state.width = size.width;
    this.state.height = size.height;
    this.write();
    this.resize();
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return { x: clamp((e.clientX - r.left) / r.width, 0, 1), y: clamp((e.clientY - r.top) / r.height, 0, 1),
      px: e.clientX - r.left, py: e.clientY - r.top, sx: r.width, sy: r.height };
  }

  hit(p) {
    for (let i = this.state.boxes.length - 1; i >= 0; i--) {
      const b = this.state.boxes[i];
      const corners = { nw: [b.x, b.y], ne: [b.x + b.w, b.y], sw: [b.x, b.y + b.h], se: [b.x + b.w, b.y + b.h] };
      for (const [name, [cx, cy]] of Object.entries(corners)) {
        if (Math.abs(cx * p.sx - p.px) <= HANDLE && Math.abs(cy * p.sy - p.py) <= HANDLE) return { index: i, corner: name };
      }
      if (p.x >= b.x && p.x <= b.x + b.w && p.y >= b.y && p.y <= b.y + b.h) return { index: i, corner: null };
    }
    return null;
  }

  onDown(e) {
    this.refresh();
    if (!this.state.ok) return;
    e.stopPropagation();
    this.canvas.focus();
    this.canvas.setPointerCapture?.(e.pointerId);
    const p = this.point(e);
    this.note = "";
    const hit = this.video ? this.hitVideo(p) : this.hit(p);
    if (hit) {
      this.selected = hit.index;
      const box = this.state.boxes[hit.index];
      const path = pathOf(box);
      const part = hit.part ?? "start";
      const b = part === "end" ? path[path.length - 1].rect : path.find((f) => f.at === 0).rect;
      const mode = this.video && e.shiftKey ? "path" : hit.corner ? "resize" : "move";
      this.drag = { mode, corner: hit.corner, part, start: p, box: b, path };
    } else {
      this.state.boxes.push({ x: round(p.x), y: round(p.y), w: 0, h: 0, prompt: "an object", weight: 1.0, curve: "constant" });
      this.ids.push(this.nextId++);
      this.selected = this.state.boxes.length - 1;
      this.drag = { mode: "draw", start: p };
    }
    this.render();
  }

  onMove(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const p = this.point(e);
    const box = this.state.boxes[this.selected];
    const { start } = this.drag;
    if (this.drag.mode === "draw") {
      Object.assign(box, { x: round(Math.min(start.x, p.x)), y: round(Math.min(start.y, p.y)),
        w: round(Math.abs(p.x - start.x)), h: round(Math.abs(p.y - start.y)) });
    } else if (this.drag.mode === "path") {
      this.movePath(box, p.x - start.x, p.y - start.y);
    } else if (this.drag.part === "end") {
      if (this.drag.mode === "move" && p.x === start.x && p.y === start.y) return; // a click on the tab
      this.setEnd(box, this.dragged(p));
    } else if (this.drag.mode === "move") {
      const b = this.drag.box;
      box.x = round(clamp(b.x + p.x - start.x, 0, 1 - b.w));
      box.y = round(clamp(b.y + p.y - start.y, 0, 1 - b.h));
      if (keyframeAt(box, 0)) Object.assign(box, { w: b.w, h: b.h }); // the start is that keyframe's
      this.syncStart(box);
    } else {
      const b = this.drag.box;
      let [x0, y0, x1, y1] = [b.x, b.y, b.x + b.w, b.y + b.h];
      if (this.drag.corner.includes("w")) x0 = clamp(p.x, 0, x1 - MIN_SIZE);
      if (this.drag.corner.includes("e")) x1 = clamp(p.x, x0 + MIN_SIZE, 1);
      if (this.drag.corner.includes("n")) y0 = clamp(p.y, 0, y1 - MIN_SIZE);
      if (this.drag.corner.includes("s")) y1 = clamp(p.y, y0 + MIN_SIZE, 1);
      Object.assign(box, { x: round(x0), y: round(y0), w: round(x1 - x0), h: round(y1 - y0) });
      this.syncStart(box);
    }
    this.render();
  }

  // The rectangle a move or resize drag of the end box makes of it (as for the box itself above).
  dragged(p) {
    const { start, box: b, corner } = this.drag;
    if (!corner) {
      return { x: round(clamp(b.x + p.x - start.x, 0, 1 - b.w)), y: round(clamp(b.y + p.y - start.y, 0, 1 - b.h)), w: b.w, h: b.h };
    }
    let [x0, y0, x1, y1] = [b.x, b.y, b.x + b.w, b.y + b.h];
    if (corner.includes("w")) x0 = clamp(p.x, 0, x1 - MIN_SIZE);
    if (corner.includes("e")) x1 = clamp(p.x, x0 + MIN_SIZE, 1);
    if (corner.includes("n")) y0 = clamp(p.y, 0, y1 - MIN_SIZE);
    if (corner.includes("s")) y1 = clamp(p.y, y0 + MIN_SIZE, 1);
    return { x: round(x0), y: round(y0), w: round(x1 - x0), h: round(y1 - y0) };
  }

  // A keyframe at 0 (hand-written) is where the box is on the first frame: it follows the box's own x, y, w, h.
  syncStart(box) {
    const first = keyframeAt(box, 0);
    if (first) Object.assign(first, { x: box.x, y: box.y, w: box.w, h: box.h });
  }

  // The end box is the keyframe at 1 (the last frame), added when there is none; other keyframes stay.
  setEnd(box, rect) {
    let end = keyframeAt(box, 1);
    if (!end) {
      end = { at: 1 };
      box.keyframes = [...(isMoving(box) ? box.keyframes : []), end];
    }
    Object.assign(end, { x: rect.x, y: rect.y, w: rect.w, h: rect.h });
  }

  // Shift-drag: the box and all its keyframes by the same (dx, dy), every one kept inside the image.
  movePath(box, dx, dy) {
    const rects = this.drag.path.map((f) => f.rect);
    dx = clamp(dx, Math.max(...rects.map((r) => -r.x)), Math.min(...rects.map((r) => 1 - r.x - r.w)));
    dy = clamp(dy, Math.max(...rects.map((r) => -r.y)), Math.min(...rects.map((r) => 1 - r.y - r.h)));
    const own = this.drag.path.find((f) => f.at === 0).rect;
    Object.assign(box, { x: round(own.x + dx), y: round(own.y + dy) });
    for (const k of isMoving(box) ? box.keyframes : []) {
      const was = this.drag.path.find((f) => f.at === Number(k?.at))?.rect;
      if (was) Object.assign(k, { x: round(was.x + dx), y: round(was.y + dy) });
    }
    this.syncStart(box);
  }

  // The "moving" toggle: on adds the end keyframe (the box shifted, so that both show), off makes the box
  // stay where it is on the first frame, all its keyframes removed (the note says which).
  setMoving(on) {
    const box = this.state.boxes[this.selected];
    this.keepVideo = true;
    if (!box || on === isMoving(box)) return this.render();
    const start = pathOf(box).find((f) => f.at === 0).rect;
    if (on) {
      const shift = (pos, size) => (1 - pos - size >= 0.05 ? Math.min(0.25, 1 - pos - size) : -Math.min(0.25, pos));
      const dx = shift(start.x, start.w), dy = Math.abs(dx) >= 0.05 ? 0 : shift(start.y, start.h);
      this.setEnd(box, { x: round(start.x + dx), y: round(start.y + dy), w: start.w, h: start.h });
      this.note = `box ${this.ids[this.selected]} moves: drag the dashed box to where it ends`;
    } else {
      const others = box.keyframes.map((k) => Number(k?.at)).filter((at) => at > 0 && at < 1);
      Object.assign(box, start);
      delete box.keyframes;
      this.note = `box ${this.ids[this.selected]} stays` + (others.length ? ` (keyframes at ${others.join(", ")} removed too)` : "");
    }
    this.write();
  }

  // Video mode's hit test: a moving box's end box (over its start box), the selected static box's tab, then
  // the start box; corners before insides, the top box first.
  hitVideo(p) {
    const corner = (r) => {
      const corners = { nw: [r.x, r.y], ne: [r.x + r.w, r.y], sw: [r.x, r.y + r.h], se: [r.x + r.w, r.y + r.h] };
      for (const [name, [cx, cy]] of Object.entries(corners)) {
        if (Math.abs(cx * p.sx - p.px) <= HANDLE && Math.abs(cy * p.sy - p.py) <= HANDLE) return name;
      }
      return null;
    };
    const inside = (r) => p.x >= r.x && p.x <= r.x + r.w && p.y >= r.y && p.y <= r.y + r.h;
    for (let i = this.state.boxes.length - 1; i >= 0; i--) {
      const b = this.state.boxes[i];
      const path = pathOf(b);
      const start = path.find((f) => f.at === 0).rect;
      if (isMoving(b)) {
        const end = path[path.length - 1].rect;
        const c = corner(end);
        if (c || inside(end)) return { index: i, part: "end", corner: c };
      } else if (i === this.selected) {
        const [tx, ty] = this.tab(start, p.sx, p.sy);
        if (Math.abs(tx - p.px) <= HANDLE && Math.abs(ty - p.py) <= HANDLE) return { index: i, part: "end", corner: null };
      }
      const c = corner(start);
      if (c || inside(start)) return { index: i, part: "start", corner: c };
    }
    return null;
  }

  // Centre (px) of a static box's "drag to move" tab: inside its right edge, half way down.
  tab(r, W, H) {
    return [Math.max(r.x * W + 2, (r.x + r.w) * W - TAB), (r.y + r.h / 2) * H];
  }

  onUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const box = this.state.boxes[this.selected];
    if (this.drag.mode === "draw" && (box.w < MIN_SIZE || box.h < MIN_SIZE)) {
      this.state.boxes.splice(this.selected, 1); // a click, not a drag: no box
      this.ids.splice(this.selected, 1);
      this.selected = -1;
    }
    this.drag = null;
    this.write();
  }

  deleteSelected() {
    if (this.selected < 0) return;
    this.state.boxes.splice(this.selected, 1);
    this.ids.splice(this.selected, 1);
    this.selected = -1;
    this.write();
  }

  // The second toolbar row is in the DOM in video mode only: images keep the editor they always had.
  showVideoBar() {
    if (this.video && !this.videoBar.isConnected) this.toolbar.after(this.videoBar);
    if (!this.video && this.videoBar.isConnected) this.videoBar.remove();
  }

  render() {
    this.showVideoBar();
    if (this.canvas.height !== this.canvasHeight || !this.element.style.minHeight || this.shownVideo !== this.video) this.resize();
    const n = this.state.boxes.length;
    const clip = this.video ? (this.frames > 1 ? `, ${this.frames} frames` : ", video") : "";
    this.status.textContent = this.state.ok
      ? `${n} ${n === 1 ? "box" : "boxes"}${this.chained.length ? ` + ${this.chained.length} chained` : ""}, ${this.state.width}x${this.state.height}${clip}`
      : "regions_json is not valid JSON: fix it in the text box";
    this.status.dataset.boxes = String(n);
    const ctx = this.canvas.getContext("2d");
    const { width: W, height: H } = this.canvas;
    ctx.fillStyle = "#222";
    ctx.fillRect(0, 0, W, H);
    ctx.font = "11px sans-serif";
    for (const r of this.chained) { // read-only: dashed grey, edit them on their own node
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = "#aaa";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(r.x * W, r.y * H, r.w * W, r.h * H);
      ctx.setLineDash([]);
      ctx.fillStyle = "#bbb";
      ctx.fillText(`${r.label} (chained)`.slice(0, 34), r.x * W + 3, r.y * H + 12);
    }
    if (this.video) {
      this.state.boxes.forEach((b, i) => this.drawMoving(ctx, b, i, W, H));
      this.showFields();
      return;
    }
    this.state.boxes.forEach((b, i) => {
      const color = this.colorOf(i);
      ctx.fillStyle = color + "40";
      ctx.strokeStyle = color;
      ctx.lineWidth = i === this.selected ? 3 : 1.5;
      ctx.fillRect(b.x * W, b.y * H, b.w * W, b.h * H);
      ctx.strokeRect(b.x * W, b.y * H, b.w * W, b.h * H);
      ctx.fillStyle = "#fff";
      ctx.fillText(`${this.ids[i]}: ${b.prompt ?? ""}`.slice(0, 30), b.x * W + 3, b.y * H + 12);
      if (i === this.selected) {
        ctx.fillStyle = color;
        for (const [cx, cy] of [[b.x, b.y], [b.x + b.w, b.y], [b.x, b.y + b.h], [b.x + b.w, b.y + b.h]]) {
          ctx.fillRect(cx * W - 3, cy * H - 3, 6, 6);
        }
      }
    });
    this.showFields();
  }

  // Video mode: the start box as in image mode; a moving box's path (centre to centre through every
  // keyframe, dots at the ones between, an arrow at the end) and its end box, dashed and lighter; the
  // selected static box's tab to drag its end out of it.
  drawMoving(ctx, b, i, W, H) {
    const color = this.colorOf(i);
    const selected = i === this.selected;
    const path = pathOf(b);
    const start = path.find((f) => f.at === 0).rect;
    const end = path[path.length - 1].rect;
    const centre = (r) => [(r.x + r.w / 2) * W, (r.y + r.h / 2) * H];
    const handles = (r, filled) => {
      ctx.fillStyle = color;
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      for (const [cx, cy] of [[r.x, r.y], [r.x + r.w, r.y], [r.x, r.y + r.h], [r.x + r.w, r.y + r.h]]) {
        if (filled) ctx.fillRect(cx * W - 3, cy * H - 3, 6, 6);
        else ctx.strokeRect(cx * W - 3, cy * H - 3, 6, 6);
      }
    };
    ctx.setLineDash([]);
    ctx.fillStyle = color + "40";
    ctx.strokeStyle = color;
    ctx.lineWidth = selected ? 3 : 1.5;
    ctx.fillRect(start.x * W, start.y * H, start.w * W, start.h * H);
    ctx.strokeRect(start.x * W, start.y * H, start.w * W, start.h * H);
    ctx.fillStyle = "#fff";
    ctx.fillText(`${this.ids[i]}: ${b.prompt ?? ""}`.slice(0, 30), start.x * W + 3, start.y * H + 12);
    if (isMoving(b)) {
      if (selected) { // the keyframes between, thin and dotted
        ctx.setLineDash([2, 3]);
        ctx.lineWidth = 1;
        for (const f of path.slice(1, -1)) ctx.strokeRect(f.rect.x * W, f.rect.y * H, f.rect.w * W, f.rect.h * H);
      }
      ctx.fillStyle = color + "1a"; // the end box
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = selected ? 2.5 : 1.5;
      ctx.fillRect(end.x * W, end.y * H, end.w * W, end.h * H);
      ctx.strokeRect(end.x * W, end.y * H, end.w * W, end.h * H);
      ctx.setLineDash([]);
      ctx.fillStyle = "#fff";
      ctx.fillText(`${this.ids[i]} end`, end.x * W + 3, (end.y + end.h) * H - 4);
      const points = path.map((f) => centre(f.rect)); // the path
      ctx.strokeStyle = "#000a";
      ctx.lineWidth = 4;
      ctx.beginPath();
      points.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.stroke();
      const [x1, y1] = points[points.length - 1];
      const [x0, y0] = points.slice(0, -1).reverse().find(([x, y]) => Math.hypot(x1 - x, y1 - y) > 1) ?? [x1, y1];
      const length = Math.hypot(x1 - x0, y1 - y0);
      if (length > 1) { // arrowhead at the end box's centre
        const [ux, uy] = [(x1 - x0) / length, (y1 - y0) / length];
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.moveTo(x1, y1);
        ctx.lineTo(x1 - 9 * ux - 4.5 * uy, y1 - 9 * uy + 4.5 * ux);
        ctx.lineTo(x1 - 9 * ux + 4.5 * uy, y1 - 9 * uy - 4.5 * ux);
        ctx.closePath();
        ctx.fill();
      }
      const dot = ([x, y], r) => {
        ctx.beginPath();
        ctx.arc(x, y, r, 0, 2 * Math.PI);
        ctx.fillStyle = color;
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1;
        ctx.stroke();
      };
      dot(points[0], 3);
      path.slice(1, -1).forEach((f, k) => { // keyframes between: a dot on the path, their `at` beside it
        dot(points[k + 1], 3.5);
        ctx.fillStyle = "#fff";
        ctx.fillText(String(round(f.at)), points[k + 1][0] + 6, points[k + 1][1] - 5);
      });
      if (selected) handles(end, false);
    } else if (selected) { // the tab: drag it to where the box ends
      const [tx, ty] = this.tab(start, W, H);
      ctx.fillStyle = color;
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(tx + 5, ty);
      ctx.lineTo(tx - 4, ty - 6);
      ctx.lineTo(tx - 4, ty + 6);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
    if (selected) handles(start, true);
  }

  showVideo(box) {
    this.moving.disabled = !box;
    this.moving.checked = isMoving(box);
    const id = box ? this.ids[this.selected] : 0;
    const ats = box ? pathOf(box).map((f) => round(f.at)) : [];
    this.videoInfo.textContent = this.note || (!box ? "select a box to make it move"
      : isMoving(box) ? `box ${id} moves: keyframes at ${ats.join(", ")}` : `box ${id} stays: tick moving or drag its \u25b8`);
  }

  showFields() {
    const box = this.state.boxes[this.selected];
    if (this.video) this.showVideo(box);
    for (const field of [this.prompt, this.weight, this.curve, this.endWeight, this.switchAt, this.weights, this.remove]) {
      field.disabled = !box;
    }
    const set = (input, value) => { if (document.activeElement !== input) input.value = value; };
    set(this.prompt, box?.prompt ?? "");
    set(this.weight, box?.weight ?? "");
    set(this.curve, box?.curve ?? "constant");
    set(this.endWeight, box ? box.end_weight ?? box.weight ?? 1 : "");
    set(this.switchAt, box ? box.switch_at ?? 0.5 : "");
    set(this.weights, box ? (Array.isArray(box.weights) ? box.weights.join(", ") : box.weights ?? "") : "");
    drawPlot(this.plot, box, box ? this.colorOf(this.selected) : "#888", box ? `box ${this.ids[this.selected]}` : "");
  }
}

app.registerExtension({
  name: "attention_atelier.regions",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    addStyle();
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const jsonWidget = this.widgets?.find((w) => w.name === JSON_WIDGET);
      if (!jsonWidget) return result;
      if (jsonWidget.options) jsonWidget.options.getMinHeight = () => 110; // the JSON stays readable
      const editor = new RegionEditor(this, jsonWidget);
      // The classic canvas gives a DOM widget its height minus a margin above and below.
      const outer = () => editor.height + 2 * (widget?.margin ?? 10);
      const widget = this.addDOMWidget(EDITOR_WIDGET, "atelier_regions", editor.element, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: outer,
        getMaxHeight: outer,
      });
      widget.serialize = false;
      this.atelierRegionEditor = editor;
      const timer = setInterval(() => editor.refresh(), 400);
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        clearInterval(timer);
        return onRemoved?.apply(this, arguments);
      };
      this.setSize?.([Math.max(this.size[0], CANVAS_WIDTH + 40), this.computeSize()[1]]);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () { // a loaded workflow's size never hides the editor
      const result = onConfigure?.apply(this, arguments);
      this.atelierRegionEditor?.refresh();
      this.atelierRegionEditor?.resize();
      this.atelierRegionEditor?.render();
      return result;
    };
  },
});

