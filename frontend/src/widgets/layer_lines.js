// A run on workers, in the gradient panel: per layer over time, the averaged gradient's norm as a thick line amid
// each worker's own as thin faint lines, so averaging visibly narrows the spread. Data are float32 buffers:
// steps [points] and values [layers, 1 + workers, points] (the average first).
// Colours and widths (bpmagic/dashboard/theme.py), each layer's range, the tick labels and the caption
// (scales.py) come from the kernel, the same ones its static image is drawn with; only placing each point happens
// here, where it is drawn (every update, and on every resize).
import { floats } from "../shared/buffers";

function div(css, text) {
  const d = document.createElement("div");
  if (css) d.style.cssText = css;
  if (text !== undefined) d.textContent = text;
  return d;
}

function draw(model, canvas, parts) {
  const theme = model.get("theme");
  const layers = model.get("layers");
  const lines = 1 + model.get("workers");
  const steps = floats(model.get("steps"));
  const values = floats(model.get("values"));
  const axes = model.get("axes");
  const { title, legend, start, end, caption } = parts;
  title.textContent = model.get("title");
  const [thick, thin] = model.get("series");
  legend.replaceChildren(...[[thick, theme.series[0], theme.average_width], [thin, theme.worker, theme.worker_width]]
    .map(([name, colour, width]) => {
      const item = div("display: flex; align-items: center; gap: 4px");
      item.append(div(`width: 14px; height: 0; border-top: ${Math.max(1, width)}px solid ${colour}`), name);
      return item;
    }));

  const ratio = window.devicePixelRatio || 1;
  // a deep net's charts shrink to fit (the kernel's row)
  const row = model.get("row"), nameW = theme.name_width, right = theme.lines_ticks;
  const w = canvas.clientWidth || 400, h = row * layers.length;
  canvas.style.height = `${h}px`;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const P = steps.length;
  const ready = axes.x && values.length === layers.length * lines * P;
  canvas.dataset.strokes = "0";  // lines drawn with two points or more (the tests read it)
  start.textContent = ready ? axes.start : "";
  end.textContent = ready ? axes.end : "";
  caption.textContent = ready ? axes.caption : "waiting for the first step…";
  ctx.font = "11px sans-serif";
  const ink = getComputedStyle(canvas).color || theme.text;  // the layer names in the page's text colour
  let strokes = 0;
  layers.forEach((layer, i) => {
    const top = i * row;
    ctx.fillStyle = theme.track;
    ctx.fillRect(nameW, top + 2, w - nameW - right, row - 4);
    ctx.fillStyle = ink;
    ctx.textAlign = "left";
    ctx.fillText(layer, 0, top + row / 2 + 4, nameW - 4);
    if (!ready || !axes.rows[i]) return;
    const [x0, x1] = axes.x, [lo, hi] = axes.rows[i];
    const X = (s) => nameW + ((s - x0) / (x1 - x0)) * (w - nameW - right);
    const Y = (v) => top + 4 + (1 - (Math.log10(v) - lo) / (hi - lo)) * (row - 8);
    ctx.fillStyle = theme.axis; ctx.font = "9px sans-serif"; ctx.textAlign = "right";
    ctx.fillText(axes.ticks[i][0], w, top + 10);
    if (row >= theme.lines_both_ticks) ctx.fillText(axes.ticks[i][1], w, top + row - 4);
    ctx.font = "11px sans-serif";
    // the workers first, the average drawn over them
    for (const j of [...Array(lines).keys()].slice(1).concat([0])) {
      ctx.strokeStyle = j === 0 ? theme.series[0] : theme.worker;
      ctx.lineWidth = j === 0 ? theme.average_width : theme.worker_width;
      ctx.beginPath();
      let run = 0;
      for (let p = 0; p < P; p++) {
        const v = values[(i * lines + j) * P + p];
        if (!(v > 0 && Number.isFinite(v))) { run = 0; continue; }  // not on a log axis: a gap
        run ? ctx.lineTo(X(steps[p]), Y(v)) : ctx.moveTo(X(steps[p]), Y(v));
        run += 1;
        if (run === 2) strokes += 1;
      }
      ctx.stroke();
    }
  });
  canvas.dataset.strokes = String(strokes);
}

export default {
  render({ model, el }) {
    const theme = model.get("theme");
    el.classList.add("bpmagic-worker-lines");
    const font = "font: 11px sans-serif;";
    const parts = {
      title: div("font: bold 12px sans-serif; margin: 8px 0 4px"),
      legend: div(font + `display: flex; gap: 2px 12px; flex-wrap: wrap; margin-bottom: 3px; color: ${theme.legend}`),
      start: div("position: absolute; left: 0"),
      end: div("position: absolute; right: 0"),
      caption: div(`font: 10px sans-serif; color: ${theme.axis}; margin-top: 2px`),
    };
    parts.legend.className = "bpmagic-worker-lines-legend";
    parts.caption.className = "bpmagic-worker-lines-caption";
    const canvas = document.createElement("canvas");
    canvas.style.cssText = "width: 100%; height: 0; display: block";
    const time = div(`position: relative; height: 14px; margin: 0 ${theme.lines_ticks}px 0 ${theme.name_width}px; ` +
      `color: ${theme.axis}; font: 10px sans-serif`);
    time.append(parts.start, parts.end);
    el.append(parts.title, parts.legend, canvas, time, parts.caption);
    const redraw = () => draw(model, canvas, parts);
    const resized = new ResizeObserver(() => requestAnimationFrame(redraw));
    resized.observe(canvas);
    const names = ["steps", "values", "axes", "layers", "workers", "series", "title", "row"];
    for (const name of names) model.on(`change:${name}`, redraw);
    requestAnimationFrame(redraw);
    return () => {
      for (const name of names) model.off(`change:${name}`, redraw);
      resized.disconnect();
    };
  },
};
