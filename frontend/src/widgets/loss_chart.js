// Loss panel of the bpmagic dashboard: training (and validation) loss drawn on a canvas, plus a status line; the
// attempt before the last Reset is drawn faintly behind, to compare. Data arrive as float32 binary buffers
// (DataViews) at most ~10 times a second.
import { hideRecord, sendRecord } from "../shared/record_protocol";

function floats(view) {
  if (!view || !view.byteLength) return new Float32Array(0);
  return new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}

function niceLog(v) {
  return v > 0 ? Math.log10(v) : NaN;
}

// axis labels with the fewest significant digits that keep them distinct (never "2.4, 2.4")
function tickLabels(positions, logScale) {
  const values = positions.map((v) => (logScale ? Math.pow(10, v) : v));
  let labels = values.map(String);
  for (let digits = 2; digits <= 6; digits++) {
    labels = values.map((v) => String(Number(v.toPrecision(digits))));
    if (new Set(labels).size === labels.length) break;
  }
  return labels;
}

// the status line's items ("training", "step 12/300", "loss 0.5", ...) never break inside themselves
function showStatus(status, text) {
  if (status.dataset.text === text) return;
  status.dataset.text = text;
  const items = text.split("  ·  ").map((item) => {
    const span = document.createElement("span");
    span.style.whiteSpace = "nowrap";
    span.textContent = item;
    return span;
  });
  // a line may break after a separator, never before it: no line starts with "·"
  status.replaceChildren(...items.flatMap((span, i) => (i ? [document.createTextNode("\u00a0\u00a0· "), span] : [span])));
}

function draw(model, canvas, status) {
  const steps = floats(model.get("steps"));
  const loss = floats(model.get("loss"));
  const vsteps = floats(model.get("val_steps"));
  const vloss = floats(model.get("val_loss"));
  const csteps = floats(model.get("clipped_steps"));
  const psteps = floats(model.get("previous_steps"));
  const ploss = floats(model.get("previous_loss"));
  const logScale = model.get("log_scale");
  showStatus(status, model.get("status"));

  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 420, h = canvas.clientHeight || 200;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 48, r: 10, t: 8, b: 22 };
  const all = [...loss, ...vloss, ...ploss].filter(Number.isFinite);
  if (!steps.length || !all.length) {
    ctx.fillStyle = "#888"; ctx.font = "12px sans-serif";
    ctx.fillText("waiting for the first step…", pad.l, h / 2);
    return;
  }
  const f = logScale ? niceLog : (v) => v;
  const ys = all.map(f).filter(Number.isFinite);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const x0 = psteps.length ? Math.min(steps[0], psteps[0]) : steps[0];
  const x1 = Math.max(steps[steps.length - 1], psteps.length ? psteps[psteps.length - 1] : 0, x0 + 1);
  const X = (s) => pad.l + ((s - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (v) => pad.t + (1 - (f(v) - lo) / (hi - lo)) * (h - pad.t - pad.b);

  ctx.strokeStyle = "#ddd"; ctx.fillStyle = "#666"; ctx.font = "10px sans-serif"; ctx.lineWidth = 1;
  const labels = tickLabels([0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4), logScale);
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (1 - i / 4) * (h - pad.t - pad.b);
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText(labels[i], 4, y + 3);
  }
  ctx.fillText(`step ${Math.round(x1)}`, w - pad.r - 60, h - 6);
  const before = (psteps.length ? " · grey: before Reset" : "") + (csteps.length ? " · orange: clipped" : "");
  ctx.fillText(`${model.get("label")} (${logScale ? "log scale" : "linear"}) from step ${Math.round(x0)}${before}`,
    pad.l, h - 6);

  const curve = (xs, ys, colour) => {
    ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    for (let i = 0; i < xs.length; i++) {
      if (!Number.isFinite(f(ys[i]))) { started = false; continue; }
      const x = X(xs[i]), y = Y(ys[i]);
      started ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      started = true;
    }
    ctx.stroke();
  };
  if (psteps.length) curve(psteps, ploss, "#c7c7c7");
  curve(steps, loss, "#1f77b4");
  ctx.fillStyle = "#ff7f0e";  // a tick under the curve at each step where gradient clipping engaged
  for (const s of csteps) ctx.fillRect(X(s) - 0.5, h - pad.b - 4, 1.5, 4);
  ctx.fillStyle = "#d62728";
  for (let i = 0; i < vsteps.length; i++) {
    if (!Number.isFinite(f(vloss[i]))) continue;
    ctx.beginPath(); ctx.arc(X(vsteps[i]), Y(vloss[i]), 3, 0, 2 * Math.PI); ctx.fill();
  }
}

// The dashboard's record (bpmagic/record.py, frontend/src/shared/record_protocol.ts): hidden while this view is live
// (it would show the dashboard twice); when the kernel sets `record` (the run ended, in the background too), the
// frontend is asked to write it into the record output.
export default {
  render({ model, el }) {
    el.classList.add("bpmagic-loss");
    hideRecord(model.get("record_token"));
    // the chart fills its panel's height: beside a tall gradient panel (a deep net) it grows instead of leaving a
    // gap (a style sheet, not the element's style: the widget's layout rewrites that)
    if (!document.getElementById("bpmagic-loss-style")) {
      const style = document.createElement("style");
      style.id = "bpmagic-loss-style";
      style.textContent = ".bpmagic-loss { display: flex !important; flex-direction: column; }";
      document.head.append(style);
    }
    const status = document.createElement("div");
    status.className = "bpmagic-status";
    status.style.cssText = "font: 12px monospace; margin: 2px 0 4px";
    const canvas = document.createElement("canvas");
    canvas.style.cssText = "width: 100%; flex: 1 1 auto; min-height: 200px; height: 200px; display: block";
    el.append(status, canvas);
    const redraw = () => draw(model, canvas, status);
    const resized = new ResizeObserver(() => requestAnimationFrame(redraw));
    resized.observe(canvas);
    const names = ["steps", "loss", "val_steps", "val_loss", "clipped_steps", "previous_steps", "previous_loss",
      "status", "log_scale", "label"];
    for (const name of names) model.on(`change:${name}`, redraw);
    const onRecord = () => sendRecord({ token: model.get("record_token"), ...model.get("record") });
    model.on("change:record", onRecord);
    requestAnimationFrame(redraw);
    return () => {
      for (const name of names) model.off(`change:${name}`, redraw);
      resized.disconnect();
      model.off("change:record", onRecord);
    };
  },
};
