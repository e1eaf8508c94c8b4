// Per-layer bars on a log scale (gradient norms, backpropagated signal, update/weight ratios), and a layers × time
// strip in which vanishing or exploding gradients show at a glance. Data are float32 buffers.
// The strip's colours are fixed log10 bands, the same for every run (never rescaled to the run's own range), so a
// healthy run and a vanishing one look different; the bars' axis adapts to the values, in whole decades.
// Colours, sizes, the strip's bands, the bars' axis and every number written here come from the kernel
// (bpmagic/dashboard/theme.py, scales.py, numbers.py), the same ones its static image is drawn with; only placing
// each value on the axis, and each strip cell in its band, happens here, where they are drawn.
import { floats } from "../shared/buffers";

// bands: [[upper bound of log10 |gradient| (null: none), colour, name], ...], lowest first; a gradient of exactly 0
// (log10: -Infinity, a vanished one) is in the lowest band, only NaN and +Infinity are not numbers to colour
function band(bands, logv, invalid) {
  if (Number.isNaN(logv) || logv === Infinity) return invalid;
  return bands.find(([upper]) => upper === null || logv < upper)[1];
}

function div(css, text) {
  const d = document.createElement("div");
  if (css) d.style.cssText = css;
  if (text !== undefined) d.textContent = text;
  return d;
}

function render({ model, el }) {
  const theme = model.get("theme");  // sent once, when the view is made
  el.classList.add("bpmagic-bars");
  const font = "font: 11px sans-serif;";
  const title = div("font: bold 12px sans-serif; margin-bottom: 4px");
  const legend = div(font + `display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 3px; color: ${theme.legend}`);
  legend.className = "bpmagic-bars-legend";
  const rows = div("");
  const axis = div(`position: relative; height: 14px; margin: 0 70px 0 ${theme.name_width + 6}px; ` +
    `color: ${theme.axis}; font: 10px sans-serif`);
  axis.className = "bpmagic-bars-axis";
  const stripBox = div("display: flex; gap: 6px; margin-top: 8px");
  const stripNames = div(font + `width: ${theme.name_width}px; position: relative; flex: none`);
  stripNames.className = "bpmagic-strip-rows";
  const stripMain = div("flex: 1; min-width: 0");
  const strip = document.createElement("canvas");
  strip.style.cssText = "width: 100%; height: 0; display: block";
  const timeAxis = div(`position: relative; height: 14px; color: ${theme.axis}; font: 10px sans-serif`);
  timeAxis.className = "bpmagic-strip-time";
  stripMain.append(strip, timeAxis);
  stripBox.append(stripNames, stripMain);
  const key = div(font + "display: flex; flex-wrap: wrap; align-items: center; gap: 2px; margin-top: 2px; " +
    `color: ${theme.legend}`);
  key.className = "bpmagic-strip-key";
  const caption = div(`font: 10px sans-serif; color: ${theme.axis}; margin-top: 2px`);
  caption.className = "bpmagic-bars-caption";
  el.append(title, legend, rows, axis, stripBox, key, caption);

  const redraw = () => {
    const layers = model.get("layers");
    const series = model.get("series");
    const values = floats(model.get("values"));
    const labels = model.get("value_labels");  // written by the kernel (dashboard/numbers.py): one style per panel
    const label = (k) => labels[k] ?? "";
    const colour = (s) => theme.series[s % theme.series.length];
    const S = series.length, bar = theme.bar, nameWidth = `${theme.name_width}px`;
    title.textContent = model.get("title");
    legend.replaceChildren(...series.map((name, s) => {
      const item = div("display: flex; align-items: center; gap: 4px");
      item.append(div(`width: 12px; height: ${bar}px; background: ${colour(s)}`), name);
      return item;
    }));
    const { lo, hi, ticks } = model.get("axis");
    const pct = (v) => (v > 0 ? Math.max(0, Math.min(100, ((Math.log10(v) - lo) / (hi - lo)) * 100)) : 0);
    const ref = model.get("reference");

    rows.replaceChildren();
    // a deep net: the first rows_shown layers' rows show, the others scroll into view (a row is as tall as its
    // bars, or as its numbers, one 12px line per series; rows 2px apart, their margins collapsed)
    const rowPx = Math.max((bar + 1) * S, 12 * S, 13) + 2;
    const scrolls = layers.length > theme.rows_shown;
    rows.style.cssText = scrolls ? `max-height: ${theme.rows_shown * rowPx + 2}px; overflow-y: auto` : "";
    rows.classList.toggle("bpmagic-bars-scroll", scrolls);
    layers.forEach((layer, i) => {
      const row = div(font + "display: flex; align-items: center; gap: 6px; margin: 2px 0");
      row.className = "bpmagic-layer-row";
      row.dataset.layer = layer;
      const name = div(`width: ${nameWidth}; overflow: hidden; text-overflow: ellipsis; white-space: nowrap`, layer);
      const track = div(`flex: 1; position: relative; background: ${theme.track}; height: ${(bar + 1) * S}px`);
      for (let s = 0; s < S; s++) {
        const v = values[i * S + s];
        const shown = div(`position: absolute; left: 0; top: ${(bar + 1) * s}px; height: ${bar}px; width: ${pct(v)}%;` +
          `background: ${Number.isFinite(v) ? colour(s) : theme.invalid}`);
        shown.className = "bpmagic-bar";
        shown.dataset.series = series[s];
        shown.dataset.value = String(v);
        shown.title = `${series[s]}: ${label(i * S + s)}`;
        track.append(shown);
      }
      if (ref > 0) {
        track.append(div(`position: absolute; left: ${pct(ref)}%; top: 0; bottom: 0; width: 1px; ` +
          `background: ${theme.reference}`));
      }
      const num = div("width: 64px; text-align: right; font: 10px/12px monospace; white-space: pre");
      num.textContent = series.map((_, s) => label(i * S + s)).join("\n");
      row.append(name, track, num);
      rows.append(row);
    });
    // the bars' axis: the kernel's decades, each label once
    axis.replaceChildren(...ticks.map(([at, text]) => {
      const shift = at === 0 ? 0 : at >= 1 ? -100 : -50;  // end labels stay inside
      return div(`position: absolute; left: ${at * 100}%; transform: translateX(${shift}%); white-space: nowrap`, text);
    }));

    const cols = model.get("strip_cols");
    const data = floats(model.get("strip"));
    const steps = model.get("strip_steps");
    if (cols > 0 && data.length === cols * layers.length) {
      const ratio = window.devicePixelRatio || 1;
      // rows shrink so that many layers fit the strip's height (the kernel's strip_row); names on every few rows,
      // counted from the last (the output layer), centred on theirs
      const rh = model.get("strip_row"), every = model.get("names_every");
      const w = strip.clientWidth || 400, h = rh * layers.length;
      strip.style.height = `${h}px`;
      strip.width = w * ratio; strip.height = h * ratio;
      const ctx = strip.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      const cw = w / cols;
      for (let l = 0; l < layers.length; l++) {
        for (let c = 0; c < cols; c++) {
          ctx.fillStyle = band(theme.bands, data[l * cols + c], theme.invalid);
          const x0 = Math.round(c * cw), x1 = Math.round((c + 1) * cw); // whole pixels: no blended seams
          ctx.fillRect(x0, l * rh, x1 - x0, rh - 1);
        }
      }
      stripNames.style.height = `${h}px`;
      stripNames.replaceChildren(...layers.flatMap((layer, l) => (layers.length - 1 - l) % every ? [] : [
        div(`position: absolute; left: 0; right: 0; top: ${(l + 0.5) * rh}px; transform: translateY(-50%); ` +
          "line-height: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap", layer)]));
      timeAxis.replaceChildren(
        div("position: absolute; left: 0", "step 0"),
        div("position: absolute; left: 50%; transform: translateX(-50%)", `${Math.round(steps / 2)}`),
        div("position: absolute; right: 0", `step ${steps}`));
      key.replaceChildren("log10 bands, the same for every run: ", ...theme.bands.map(([, colour, name]) => {
        const item = div("display: flex; align-items: center; gap: 2px; margin-right: 4px");
        item.append(div(`width: 14px; height: 9px; background: ${colour}; border: 1px solid #ccc`), name);
        return item;
      }));
      caption.textContent = `layers × time: ${series[0]}, averaged over slices of the steps. Dark blue ` +
        "(below 1e-5) while the loss is still high: the layer barely learns (vanishing); once the loss is low it " +
        "has simply converged. Red (10 and above): very large steps (exploding).";
    } else {
      strip.style.height = "0";
      stripNames.style.height = "0";
      stripNames.replaceChildren();
      timeAxis.replaceChildren();
      key.replaceChildren();
      caption.textContent = ref > 0 ? `line: ${model.get("reference_label")} (a healthy update/weight ratio)` : "";
    }
  };
  for (const name of ["layers", "series", "values", "value_labels", "strip", "strip_cols", "strip_steps", "title",
    "reference", "reference_label", "axis", "strip_row", "names_every"]) {
    model.on(`change:${name}`, redraw);
  }
  requestAnimationFrame(redraw);
}

export default { render };
