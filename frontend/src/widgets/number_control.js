// A control that holds an exact number: a slider (log or linear) to drag and a field that shows the exact value
// and takes a typed one. Nothing is snapped to a grid and nothing is sent when the view renders: only what the
// person does is sent, together with `base`, the version of the kernel's value the person was looking at, so the
// kernel can drop a value made stale by a newer change from code. A drag shows its value in the field as it goes
// and sends it once, when the slider is let go: one gesture is one change in the run's history.
// With `unlimited` (a label such as "full speed"), the slider's far end, beyond `max`, is the value 0: no limit.

const CSS = `
.bpmagic-control { display: flex; flex-wrap: wrap; align-items: center; gap: 0 8px; margin: 3px 0;
  font: 12px sans-serif; }
.bpmagic-control-label { width: 110px; flex: none; text-align: right; }
.bpmagic-control-slider { flex: 1; min-width: 80px; }
.bpmagic-control-value { width: 92px; font: 12px monospace; padding: 1px 4px; }
.bpmagic-control-error { color: #b00020; font-size: 11px; flex-basis: 100%; padding-left: 118px; }
.bpmagic-control-error:empty { display: none; }
.bpmagic-control-note { color: #777; font-size: 11px; flex-basis: 100%; padding-left: 118px; }
.bpmagic-control-note:empty { display: none; }
.bpmagic-control.bpmagic-disabled { opacity: 0.55; }
`;

function addStyle() {
  if (document.getElementById("bpmagic-control-style")) return;
  const style = document.createElement("style");
  style.id = "bpmagic-control-style";
  style.textContent = CSS;
  document.head.append(style);
}

// JavaScript's shortest round-trip form: 0.03 -> "0.03", 0.5 -> "0.5", 2 -> "2", 1e-7 -> "1e-7"
const exact = (v) => (Number.isFinite(v) ? String(v) : "");
// a dragged value keeps three significant digits: the person sees (and the kernel uses) 0.0316, not 0.031622776…
const rounded = (v) => parseFloat(v.toPrecision(3));

function render({ model, el }) {
  addStyle();
  el.classList.add("bpmagic-control");
  const label = document.createElement("span");
  label.className = "bpmagic-control-label";
  const slider = document.createElement("input");
  slider.type = "range";
  slider.step = "any";
  slider.className = "bpmagic-control-slider";
  const field = document.createElement("input");
  field.type = "text";
  field.inputMode = "decimal";
  field.className = "bpmagic-control-value";
  field.spellcheck = false;
  const error = document.createElement("span");
  error.className = "bpmagic-control-error";
  const note = document.createElement("span");
  note.className = "bpmagic-control-note";
  el.append(label, slider, field, note, error);

  const log = () => model.get("log");
  const unlimited = () => model.get("unlimited");
  const top = () => toScale(model.get("max"));
  const toScale = (v) => (log() ? Math.log10(v) : v);
  // the slider's extra stretch beyond max, for "no limit"
  const beyond = () => (unlimited() ? Math.max((top() - toScale(model.get("min"))) * 0.12, 1e-9) : 0);
  const toPosition = (v) => (unlimited() && v === 0 ? top() + beyond() : toScale(v));
  const fromPosition = (x) => {
    if (unlimited() && x > top() + beyond() / 2) return 0;
    const v = log() ? Math.pow(10, Math.min(x, top())) : Math.min(x, top());
    return rounded(v);
  };
  const shown = (v) => (unlimited() && v === 0 ? unlimited() : exact(v));
  const parse = (text) => {
    const t = text.trim().toLowerCase();
    if (unlimited() && [unlimited().toLowerCase(), "full", "max", "inf", "infinity", "∞", "none"].includes(t)) return 0;
    return t === "" ? NaN : Number(t);
  };
  let dragging = false, typing = false;

  const show = () => {
    const v = model.get("value");
    label.textContent = model.get("description");
    slider.min = String(toScale(model.get("min")));
    slider.max = String(top() + beyond());
    if (!dragging) slider.value = String(toPosition(v));
    if (!typing) field.value = shown(v);
    el.dataset.value = exact(v);
    error.textContent = model.get("error");
    note.textContent = model.get("note");
    const off = model.get("disabled");
    slider.disabled = field.disabled = off;
    el.classList.toggle("bpmagic-disabled", off);
  };
  const send = (v) => {
    model.set({ value: v, base: model.get("version") });
    model.save_changes();
  };

  slider.addEventListener("pointerdown", () => { dragging = true; });
  slider.addEventListener("input", () => {  // while dragging: show, don't send
    dragging = true;
    field.value = shown(fromPosition(parseFloat(slider.value)));
  });
  slider.addEventListener("change", () => {  // let go (or a key pressed): one value sent
    dragging = false;
    const v = fromPosition(parseFloat(slider.value));
    if (v !== model.get("value")) send(v);
    show();
  });
  slider.addEventListener("pointerup", () => { if (dragging) slider.dispatchEvent(new Event("change")); });
  field.addEventListener("focus", () => { typing = true; });
  const commit = () => {
    typing = false;
    const v = parse(field.value);
    if (!Number.isFinite(v)) {
      error.textContent = `not a number: ${field.value}`;
      field.value = shown(model.get("value"));
      return;
    }
    if (v !== model.get("value")) send(v);
    show();
  };
  field.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); commit(); field.blur(); }
    if (e.key === "Escape") { typing = false; show(); field.blur(); }
  });
  field.addEventListener("blur", () => { if (typing) commit(); });

  const names = ["value", "min", "max", "log", "description", "disabled", "error", "version", "unlimited", "note"];
  for (const name of names) model.on(`change:${name}`, show);
  show();
  return () => { for (const name of names) model.off(`change:${name}`, show); };
}

export default { render };
