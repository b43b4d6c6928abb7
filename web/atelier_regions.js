// Region editor for AtelierBoxRegions: draw, move, resize and delete boxes on a canvas with the
// image's aspect, edit each box's local prompt and weight curve, see the curve as a small plot.
// It only reads and writes the node's regions_json widget; the node works without it (API users
// write the same JSON by hand).
import { app } from "../../scripts/app.js";

const NODE = "AtelierBoxRegions";
const JSON_WIDGET = "regions_json";
const EDITOR_WIDGET = "atelier_region_editor";
const CANVAS_WIDTH = 240;
const HANDLE = 8; // px around a corner that grabs it for resizing
const MIN_SIZE = 0.02;
const CURVES = ["constant", "linear", "cosine", "step", "list"];
const COLORS = ["#e4572e", "#29a35a", "#3e7cb1", "#f3a712", "#a23e98", "#17bebb"];

// c(p), as attention/weight_curves.py defines it.
function curveAt(box, p) {
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

function listValues(weights) {
  const items = Array.isArray(weights) ? weights : String(weights ?? "").split(/[,;]/);
  return items.map((x) => String(x).trim()).filter((x) => x !== "").map(Number).filter(Number.isFinite);
}

const round = (x) => Math.round(x * 1000) / 1000;
const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);

function parseState(text) {
  try {
    const data = JSON.parse(text || "{}");
    const boxes = Array.isArray(data) ? data : Array.isArray(data?.boxes) ? data.boxes : [];
    return { width: Number(data?.width) || 512, height: Number(data?.height) || 512, boxes, ok: true };
  } catch {
    return { width: 512, height: 512, boxes: [], ok: false };
  }
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
    this.build();
    this.refresh();
  }

  build() {
    const field = "width:100%;box-sizing:border-box;font-size:11px";
    this.canvas = el("canvas", { className: "atelier-regions-canvas", tabIndex: 0 });
    this.canvas.style.cssText = "display:block;cursor:crosshair;border:1px solid #666;touch-action:none";
    this.prompt = el("input", { className: "atelier-regions-prompt", placeholder: "local prompt of the box" });
    this.weight = el("input", { className: "atelier-regions-weight", type: "number", step: "0.05", title: "weight (first step)" });
    this.curve = el("select", { className: "atelier-regions-curve" }, CURVES.map((c) => el("option", { value: c, textContent: c })));
    this.endWeight = el("input", { className: "atelier-regions-end", type: "number", step: "0.05", title: "end_weight" });
    this.switchAt = el("input", { className: "atelier-regions-switch", type: "number", step: "0.05", min: "0", max: "1", title: "switch_at" });
    this.weights = el("input", { className: "atelier-regions-list", placeholder: "list: 1, 0.8, 0.5, 0" });
    this.remove = el("button", { className: "atelier-regions-delete", textContent: "Delete box" });
    this.plot = el("canvas", { className: "atelier-regions-plot", width: CANVAS_WIDTH, height: 48 });
    this.status = el("div", { className: "atelier-regions-status" });
    for (const input of [this.prompt, this.weights]) input.style.cssText = field;
    for (const input of [this.weight, this.endWeight, this.switchAt, this.curve]) input.style.cssText = "width:23%;font-size:11px";
    this.status.style.cssText = "font-size:10px;opacity:0.75";
    this.fields = el("div", {}, [this.prompt, el("div", {}, [this.weight, this.curve, this.endWeight, this.switchAt]),
      this.weights, this.plot, this.remove]);
    this.element = el("div", { className: "atelier-regions-editor" }, [this.canvas, this.status, this.fields]);
    this.element.style.cssText = "display:flex;flex-direction:column;gap:3px;padding:2px";

    this.canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onUp(e));
    this.canvas.addEventListener("keydown", (e) => {
      if (e.key === "Delete" || e.key === "Backspace") { this.deleteSelected(); e.preventDefault(); }
      e.stopPropagation();
    });
    this.remove.addEventListener("click", () => this.deleteSelected());
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
    for (const input of [this.prompt, this.weight, this.endWeight, this.switchAt, this.weights]) {
      input.addEventListener("keydown", (e) => e.stopPropagation());
    }
  }

  get height() {
    return Math.round(CANVAS_WIDTH * this.state.height / this.state.width);
  }

  // Re-read the widget when something else (typing, loading a workflow) changed it.
  refresh() {
    const text = this.jsonWidget.value;
    if (text === this.lastText) return;
    this.lastText = text;
    this.state = parseState(text);
    this.selected = Math.min(this.selected, this.state.boxes.length - 1);
    this.canvas.width = CANVAS_WIDTH;
    this.canvas.height = this.height;
    this.status.textContent = this.state.ok ? `${this.state.boxes.length} box(es), ${this.state.width}x${this.state.height}`
      : "regions_json is not valid JSON: fix it in the text box";
    this.render();
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
    const hit = this.hit(p);
    if (hit) {
      this.selected = hit.index;
      const b = { ...this.state.boxes[hit.index] };
      this.drag = { mode: hit.corner ? "resize" : "move", corner: hit.corner, start: p, box: b };
    } else {
      this.state.boxes.push({ x: round(p.x), y: round(p.y), w: 0, h: 0, prompt: "an object", weight: 1.0, curve: "constant" });
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
    } else if (this.drag.mode === "move") {
      const b = this.drag.box;
      box.x = round(clamp(b.x + p.x - start.x, 0, 1 - b.w));
      box.y = round(clamp(b.y + p.y - start.y, 0, 1 - b.h));
    } else {
      const b = this.drag.box;
      let [x0, y0, x1, y1] = [b.x, b.y, b.x + b.w, b.y + b.h];
      if (this.drag.corner.includes("w")) x0 = clamp(p.x, 0, x1 - MIN_SIZE);
      if (this.drag.corner.includes("e")) x1 = clamp(p.x, x0 + MIN_SIZE, 1);
      if (this.drag.corner.includes("n")) y0 = clamp(p.y, 0, y1 - MIN_SIZE);
      if (this.drag.corner.includes("s")) y1 = clamp(p.y, y0 + MIN_SIZE, 1);
      Object.assign(box, { x: round(x0), y: round(y0), w: round(x1 - x0), h: round(y1 - y0) });
    }
    this.render();
  }

  onUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const box = this.state.boxes[this.selected];
    if (this.drag.mode === "draw" && (box.w < MIN_SIZE || box.h < MIN_SIZE)) {
      this.state.boxes.splice(this.selected, 1); // a click, not a drag: no box
      this.selected = -1;
    }
    this.drag = null;
    this.write();
  }

  deleteSelected() {
    if (this.selected < 0) return;
    this.state.boxes.splice(this.selected, 1);
    this.selected = -1;
    this.write();
  }

  render() {
    this.canvas.dataset.nodeId = String(this.node.id); // ids are given when the node joins a graph
    const ctx = this.canvas.getContext("2d");
    const { width: W, height: H } = this.canvas;
    ctx.fillStyle = "#222";
    ctx.fillRect(0, 0, W, H);
    this.state.boxes.forEach((b, i) => {
      const color = COLORS[i % COLORS.length];
      ctx.fillStyle = color + "40";
      ctx.strokeStyle = color;
      ctx.lineWidth = i === this.selected ? 3 : 1.5;
      ctx.fillRect(b.x * W, b.y * H, b.w * W, b.h * H);
      ctx.strokeRect(b.x * W, b.y * H, b.w * W, b.h * H);
      ctx.fillStyle = "#fff";
      ctx.font = "11px sans-serif";
      ctx.fillText(`${i + 1}: ${b.prompt ?? ""}`.slice(0, 28), b.x * W + 3, b.y * H + 12);
      if (i === this.selected) {
        ctx.fillStyle = color;
        for (const [cx, cy] of [[b.x, b.y], [b.x + b.w, b.y], [b.x, b.y + b.h], [b.x + b.w, b.y + b.h]]) {
          ctx.fillRect(cx * W - 3, cy * H - 3, 6, 6);
        }
      }
    });
    this.showFields();
  }

  showFields() {
    const box = this.state.boxes[this.selected];
    this.fields.style.display = box ? "block" : "none";
    if (!box) return;
    const set = (input, value) => { if (document.activeElement !== input) input.value = value; };
    set(this.prompt, box.prompt ?? "");
    set(this.weight, box.weight ?? 1);
    set(this.curve, box.curve ?? "constant");
    set(this.endWeight, box.end_weight ?? box.weight ?? 1);
    set(this.switchAt, box.switch_at ?? 0.5);
    set(this.weights, Array.isArray(box.weights) ? box.weights.join(", ") : box.weights ?? "");
    this.drawCurve(box);
  }

  drawCurve(box) {
    const ctx = this.plot.getContext("2d");
    const { width: W, height: H } = this.plot;
    const ys = Array.from({ length: W }, (_, i) => curveAt(box, i / (W - 1)));
    const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
    const y = (v) => H - 4 - (v - lo) / (hi - lo || 1) * (H - 8);
    ctx.fillStyle = "#1a1a1a";
    ctx.fillRect(0, 0, W, H);
    ctx.strokeStyle = "#555";
    ctx.beginPath(); ctx.moveTo(0, y(0)); ctx.lineTo(W, y(0)); ctx.stroke();
    ctx.strokeStyle = COLORS[this.selected % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    ys.forEach((v, i) => (i ? ctx.lineTo(i, y(v)) : ctx.moveTo(i, y(v))));
    ctx.stroke();
    ctx.fillStyle = "#aaa";
    ctx.font = "10px sans-serif";
    ctx.fillText(`weight over the steps: ${round(ys[0])} -> ${round(ys[W - 1])}`, 4, 11);
  }
}

app.registerExtension({
  name: "attention_atelier.regions",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const jsonWidget = this.widgets?.find((w) => w.name === JSON_WIDGET);
      if (!jsonWidget) return result;
      const editor = new RegionEditor(this, jsonWidget);
      const widget = this.addDOMWidget(EDITOR_WIDGET, "atelier_regions", editor.element, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => editor.height + (editor.selected >= 0 ? 150 : 24),
      });
      widget.serialize = false;
      this.atelierRegionEditor = editor;
      const timer = setInterval(() => editor.refresh(), 400);
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        clearInterval(timer);
        return onRemoved?.apply(this, arguments);
      };
      this.setSize?.([Math.max(this.size[0], CANVAS_WIDTH + 30), this.computeSize()[1]]);
      return result;
    };
  },
});
