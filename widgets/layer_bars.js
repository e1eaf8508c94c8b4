// Per-layer bars on a log scale (gradient norms, backpropagated signal, update/weight ratios), and a
// layers x time strip in which vanishing or exploding gradients show at a glance. Data are float32 buffers.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

function floats(view) {
  if (!view || !view.byteLength) return new Float32Array(0);
  return new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}

// log10 value -> colour: blue (vanishing) through white to red (exploding), centred on `mid`
function heat(v, lo, hi) {
  if (!Number.isFinite(v)) return "#000";
  const t = Math.max(0, Math.min(1, (v - lo) / Math.max(hi - lo, 1e-9)));
  const r = Math.round(t < 0.5 ? 60 + 390 * t : 255);
  const g = Math.round(t < 0.5 ? 90 + 330 * t : 255 - 330 * (t - 0.5));
  const b = Math.round(t < 0.5 ? 255 : 255 - 390 * (t - 0.5));
  return `rgb(${r},${Math.max(0, g)},${Math.max(0, b)})`;
}

function render({ model, el }) {
  el.classList.add("bpmagic-bars");
  const title = document.createElement("div");
  title.style.cssText = "font: bold 12px sans-serif; margin-bottom: 4px";
  const rows = document.createElement("div");
  const strip = document.createElement("canvas");
  strip.style.cssText = "width: 100%; height: 0; display: block; margin-top: 6px";
  const legend = document.createElement("div");
  legend.style.cssText = "font: 10px sans-serif; color: #666; margin-top: 2px";
  el.append(title, rows, strip, legend);

  const redraw = () => {
    const layers = model.get("layers");
    const series = model.get("series");
    const values = floats(model.get("values"));
    const S = series.length;
    title.textContent = model.get("title");
    const logs = Array.from(values, (v) => (v > 0 ? Math.log10(v) : NaN)).filter(Number.isFinite);
    const ref = model.get("reference");
    if (ref > 0) logs.push(Math.log10(ref));
    const lo = logs.length ? Math.floor(Math.min(...logs)) - 0.5 : -6;
    const hi = logs.length ? Math.ceil(Math.max(...logs)) + 0.5 : 1;
    const pct = (v) => (v > 0 ? Math.max(0, Math.min(100, ((Math.log10(v) - lo) / (hi - lo)) * 100)) : 0);

    rows.replaceChildren();
    layers.forEach((layer, i) => {
      const row = document.createElement("div");
      row.className = "bpmagic-layer-row";
      row.dataset.layer = layer;
      row.style.cssText = "display: flex; align-items: center; gap: 6px; margin: 2px 0; font: 11px sans-serif";
      const name = document.createElement("span");
      name.textContent = layer;
      name.style.cssText = "width: 70px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap";
      const track = document.createElement("div");
      track.style.cssText = "flex: 1; position: relative; background: #f2f2f2; height: " + 8 * S + "px";
      for (let s = 0; s < S; s++) {
        const v = values[i * S + s];
        const bar = document.createElement("div");
        bar.className = "bpmagic-bar";
        bar.dataset.series = series[s];
        bar.dataset.value = String(v);
        bar.title = `${series[s]}: ${Number.isFinite(v) ? v.toExponential(2) : v}`;
        bar.style.cssText = `position: absolute; left: 0; top: ${8 * s}px; height: 7px; width: ${pct(v)}%;` +
          `background: ${Number.isFinite(v) ? COLORS[s % COLORS.length] : "#000"}`;
        track.append(bar);
      }
      if (ref > 0) {
        const mark = document.createElement("div");
        mark.style.cssText = `position: absolute; left: ${pct(ref)}%; top: 0; bottom: 0; width: 1px; background: #333`;
        track.append(mark);
      }
      const num = document.createElement("span");
      num.style.cssText = "width: 64px; text-align: right; font-family: monospace";
      num.textContent = Number.isFinite(values[i * S]) ? values[i * S].toExponential(1) : String(values[i * S]);
      row.append(name, track, num);
      rows.append(row);
    });

    const cols = model.get("strip_cols");
    const data = floats(model.get("strip"));
    if (cols > 0 && data.length === cols * layers.length) {
      const ratio = window.devicePixelRatio || 1;
      const w = strip.clientWidth || 400, h = Math.max(12 * layers.length, 24);
      strip.style.height = `${h}px`;
      strip.width = w * ratio; strip.height = h * ratio;
      const ctx = strip.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      const fin = Array.from(data).filter(Number.isFinite);
      const slo = fin.length ? Math.min(...fin) : -6, shi = fin.length ? Math.max(...fin) : 0;
      const cw = w / cols, rh = h / layers.length;
      for (let l = 0; l < layers.length; l++) {
        for (let c = 0; c < cols; c++) {
          ctx.fillStyle = heat(data[l * cols + c], slo, shi);
          ctx.fillRect(c * cw, l * rh, Math.ceil(cw), Math.ceil(rh));
        }
      }
      legend.textContent = `layers × time, log10 ${series[0]}: blue ${slo.toFixed(1)} … red ${shi.toFixed(1)}` +
        " (a blue row is vanishing, a red one exploding)";
    } else {
      strip.style.height = "0";
      legend.textContent = ref > 0 ? `line: ${ref.toExponential(0)} (a healthy update/weight ratio)` : "";
    }
  };
  for (const name of ["layers", "series", "values", "strip", "strip_cols", "title", "reference"]) {
    model.on(`change:${name}`, redraw);
  }
  requestAnimationFrame(redraw);
}

export default { render };
