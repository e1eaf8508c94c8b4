// Loss panel of the bpmagic dashboard: training (and validation) loss drawn on a canvas, plus a status line; the
// attempt before the last Reset is drawn faintly behind, to compare. Data arrive as float32 binary buffers
// (DataViews) at most ~10 times a second.
import { floats } from "../shared/buffers";
import { hideRecord, sendRecord } from "../shared/record_protocol";

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

// The axes (range, tick labels, caption), colours and sizes come from the kernel (bpmagic/dashboard/scales.py and
// theme.py), the same ones its static image is drawn with; only mapping each point onto them happens here, where
// the points are drawn (every redraw, and on every resize).
function draw(model, canvas, status) {
  const steps = floats(model.get("steps"));
  const loss = floats(model.get("loss"));
  const vsteps = floats(model.get("val_steps"));
  const vloss = floats(model.get("val_loss"));
  const csteps = floats(model.get("clipped_steps"));
  const psteps = floats(model.get("previous_steps"));
  const ploss = floats(model.get("previous_loss"));
  const logScale = model.get("log_scale");
  const theme = model.get("theme");
  const axes = model.get("axes");
  showStatus(status, model.get("status"));

  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 420, h = canvas.clientHeight || theme.chart_height;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const [padL, padR, padT, padB] = theme.chart_pad;
  ctx.font = "10px sans-serif";
  if (!axes.x) {
    ctx.fillStyle = theme.empty; ctx.font = "12px sans-serif";
    ctx.fillText("waiting for the first step…", padL, h / 2);
    return;
  }
  const [x0, x1] = axes.x, [lo, hi] = axes.y;
  const f = logScale ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;  // NaN: not on the axis, not drawn
  const X = (s) => padL + ((s - x0) / (x1 - x0)) * (w - padL - padR);
  const Y = (v) => padT + (1 - (f(v) - lo) / (hi - lo)) * (h - padT - padB);

  ctx.strokeStyle = theme.grid; ctx.fillStyle = theme.axis; ctx.lineWidth = 1;
  ctx.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const y = padT + (1 - i / 4) * (h - padT - padB);
    ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - padR, y); ctx.stroke();
    ctx.fillText(axes.ticks[i], padL - 4, y + 4);
  }
  ctx.fillText(axes.end, w - padR, h - 6);
  ctx.textAlign = "left";
  ctx.fillText(axes.caption, padL, h - 6);

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
  if (psteps.length) curve(psteps, ploss, theme.previous);
  curve(steps, loss, theme.series[0]);
  ctx.fillStyle = theme.clipped;  // a tick under the curve at each step where gradient clipping engaged
  for (const s of csteps) ctx.fillRect(X(s) - 0.5, h - padB - 4, 1.5, 4);
  ctx.fillStyle = theme.validation;
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
    const height = `${model.get("theme").chart_height}px`;
    canvas.style.cssText = `width: 100%; flex: 1 1 auto; min-height: ${height}; height: ${height}; display: block`;
    el.append(status, canvas);
    const redraw = () => draw(model, canvas, status);
    const resized = new ResizeObserver(() => requestAnimationFrame(redraw));
    resized.observe(canvas);
    const names = ["steps", "loss", "val_steps", "val_loss", "clipped_steps", "previous_steps", "previous_loss",
      "status", "log_scale", "axes", "theme"];
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
