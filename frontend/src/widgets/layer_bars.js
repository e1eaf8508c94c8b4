// Per-layer bars on a log scale (gradient norms, backpropagated signal, update/weight ratios), and a layers × time
// strip in which vanishing or exploding gradients show at a glance. Data are float32 buffers.
// The strip's colours are fixed log10 bands, the same for every run (never rescaled to the run's own range), so a
// healthy run and a vanishing one look different; the bars' axis adapts to the values, in whole decades.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];
// log10 |gradient| bands of the strip: [upper bound, colour, name]; below -5 little is learnt, above 1 steps are big
const BANDS = [
  [-5, "#08306b", "< 1e-5"], [-4, "#2171b5", "1e-5"], [-3, "#6baed6", "1e-4"], [-2, "#c6dbef", "0.001"],
  [-1, "#e5f5e0", "0.01"], [0, "#a1d99b", "0.1"], [1, "#fdae6b", "1"], [2, "#e6550d", "10"],
  [Infinity, "#a50f15", "≥ 100"],
];

function floats(view) {
  if (!view || !view.byteLength) return new Float32Array(0);
  return new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}

// plain decimals where they read better (0.0298, 12.4), powers of ten for the very small and large (3.1e-5)
function number(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e-3 && a < 1e4) return String(Number(v.toPrecision(3)));
  return v.toExponential(1).replace("e+", "e");
}

function band(logv) {
  if (!Number.isFinite(logv)) return "#000";
  return BANDS.find(([upper]) => logv < upper)[1];
}

function div(css, text) {
  const d = document.createElement("div");
  if (css) d.style.cssText = css;
  if (text !== undefined) d.textContent = text;
  return d;
}

function render({ model, el }) {
  el.classList.add("bpmagic-bars");
  const font = "font: 11px sans-serif;";
  const title = div("font: bold 12px sans-serif; margin-bottom: 4px");
  const legend = div(font + "display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 3px; color: #444");
  legend.className = "bpmagic-bars-legend";
  const rows = div("");
  const axis = div("position: relative; height: 14px; margin: 0 70px 0 76px; color: #666; font: 10px sans-serif");
  axis.className = "bpmagic-bars-axis";
  const stripBox = div("display: flex; gap: 6px; margin-top: 8px");
  const stripNames = div(font + "width: 70px; display: flex; flex-direction: column");
  stripNames.className = "bpmagic-strip-rows";
  const stripMain = div("flex: 1; min-width: 0");
  const strip = document.createElement("canvas");
  strip.style.cssText = "width: 100%; height: 0; display: block";
  const timeAxis = div("position: relative; height: 14px; color: #666; font: 10px sans-serif");
  timeAxis.className = "bpmagic-strip-time";
  stripMain.append(strip, timeAxis);
  stripBox.append(stripNames, stripMain);
  const key = div(font + "display: flex; flex-wrap: wrap; align-items: center; gap: 2px; margin-top: 2px; color: #555");
  key.className = "bpmagic-strip-key";
  const caption = div("font: 10px sans-serif; color: #666; margin-top: 2px");
  caption.className = "bpmagic-bars-caption";
  el.append(title, legend, rows, axis, stripBox, key, caption);

  const redraw = () => {
    const layers = model.get("layers");
    const series = model.get("series");
    const values = floats(model.get("values"));
    const labels = model.get("value_labels");  // written by the kernel (dashboard/numbers.py): one style per panel
    const label = (k) => labels[k] ?? number(values[k]);
    const S = series.length;
    title.textContent = model.get("title");
    legend.replaceChildren(...series.map((name, s) => {
      const item = div("display: flex; align-items: center; gap: 4px");
      item.append(div(`width: 12px; height: 7px; background: ${COLORS[s % COLORS.length]}`), name);
      return item;
    }));
    const logs = Array.from(values, (v) => (v > 0 ? Math.log10(v) : NaN)).filter(Number.isFinite);
    const ref = model.get("reference");
    if (ref > 0) logs.push(Math.log10(ref));
    const lo = logs.length ? Math.floor(Math.min(...logs)) : -6;
    const hi = logs.length ? Math.max(Math.ceil(Math.max(...logs)), lo + 1) : 1;
    const pct = (v) => (v > 0 ? Math.max(0, Math.min(100, ((Math.log10(v) - lo) / (hi - lo)) * 100)) : 0);

    rows.replaceChildren();
    layers.forEach((layer, i) => {
      const row = div(font + "display: flex; align-items: center; gap: 6px; margin: 2px 0");
      row.className = "bpmagic-layer-row";
      row.dataset.layer = layer;
      const name = div("width: 70px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap", layer);
      const track = div("flex: 1; position: relative; background: #f2f2f2; height: " + 8 * S + "px");
      for (let s = 0; s < S; s++) {
        const v = values[i * S + s];
        const bar = div(`position: absolute; left: 0; top: ${8 * s}px; height: 7px; width: ${pct(v)}%;` +
          `background: ${Number.isFinite(v) ? COLORS[s % COLORS.length] : "#000"}`);
        bar.className = "bpmagic-bar";
        bar.dataset.series = series[s];
        bar.dataset.value = String(v);
        bar.title = `${series[s]}: ${label(i * S + s)}`;
        track.append(bar);
      }
      if (ref > 0) {
        track.append(div(`position: absolute; left: ${pct(ref)}%; top: 0; bottom: 0; width: 1px; background: #333`));
      }
      const num = div("width: 64px; text-align: right; font-family: monospace; white-space: pre");
      num.textContent = series.map((_, s) => label(i * S + s)).join("\n");
      row.append(name, track, num);
      rows.append(row);
    });
    // the bars' axis: one tick per decade, each label once
    axis.replaceChildren();
    const step = Math.max(1, Math.ceil((hi - lo) / 6));
    for (let d = lo; d <= hi; d += step) {
      const at = (d - lo) / (hi - lo), shift = at === 0 ? 0 : at >= 1 ? -100 : -50; // end labels stay inside
      const tick = div(`position: absolute; left: ${at * 100}%; transform: translateX(${shift}%); white-space: nowrap`,
        d >= -3 && d < 4 ? number(10 ** d) : `1e${d}`);  // a decade reads 1e-4, not 1.0e-4
      axis.append(tick);
    }

    const cols = model.get("strip_cols");
    const data = floats(model.get("strip"));
    const steps = model.get("strip_steps");
    if (cols > 0 && data.length === cols * layers.length) {
      const ratio = window.devicePixelRatio || 1;
      const rh = 14, w = strip.clientWidth || 400, h = rh * layers.length;
      strip.style.height = `${h}px`;
      strip.width = w * ratio; strip.height = h * ratio;
      const ctx = strip.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      const cw = w / cols;
      for (let l = 0; l < layers.length; l++) {
        for (let c = 0; c < cols; c++) {
          ctx.fillStyle = band(data[l * cols + c]);
          const x0 = Math.round(c * cw), x1 = Math.round((c + 1) * cw); // whole pixels: no blended seams
          ctx.fillRect(x0, l * rh, x1 - x0, rh - 1);
        }
      }
      stripNames.replaceChildren(...layers.map((layer) =>
        div(`height: ${rh}px; line-height: ${rh}px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap`,
          layer)));
      timeAxis.replaceChildren(
        div("position: absolute; left: 0", "step 0"),
        div("position: absolute; left: 50%; transform: translateX(-50%)", `${Math.round(steps / 2)}`),
        div("position: absolute; right: 0", `step ${steps}`));
      key.replaceChildren("log10 bands, the same for every run: ", ...BANDS.map(([, colour, name]) => {
        const item = div("display: flex; align-items: center; gap: 2px; margin-right: 4px");
        item.append(div(`width: 14px; height: 9px; background: ${colour}; border: 1px solid #ccc`), name);
        return item;
      }));
      caption.textContent = `layers × time: ${series[0]}, averaged over slices of the steps. Dark blue ` +
        "(below 1e-5) while the loss is still high: the layer barely learns (vanishing); once the loss is low it " +
        "has simply converged. Red (10 and above): very large steps (exploding).";
    } else {
      strip.style.height = "0";
      stripNames.replaceChildren();
      timeAxis.replaceChildren();
      key.replaceChildren();
      caption.textContent = ref > 0 ? `line: ${number(ref)} (a healthy update/weight ratio)` : "";
    }
  };
  for (const name of ["layers", "series", "values", "value_labels", "strip", "strip_cols", "strip_steps", "title",
    "reference"]) {
    model.on(`change:${name}`, redraw);
  }
  requestAnimationFrame(redraw);
}

export default { render };
