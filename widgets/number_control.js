// A control that holds an exact number: a slider (log or linear) to drag and a field that shows the exact value
// and takes a typed one. Nothing is snapped to a grid and nothing is sent when the view renders: only what the
// person does is sent, together with `base`, the version of the kernel's value the person was looking at, so the
// kernel can drop a value made stale by a newer change from code.

const CSS = `
.bpmagic-control { display: flex; align-items: center; gap: 8px; margin: 3px 0; font: 12px sans-serif; }
.bpmagic-control-label { width: 110px; flex: none; text-align: right; }
.bpmagic-control-slider { flex: 1; min-width: 80px; }
.bpmagic-control-value { width: 92px; font: 12px monospace; padding: 1px 4px; }
.bpmagic-control-error { color: #b00020; font-size: 11px; }
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
  el.append(label, slider, field, error);

  const log = () => model.get("log");
  const toPosition = (v) => (log() ? Math.log10(v) : v);
  const fromPosition = (x) => (log() ? Math.pow(10, x) : x);
  let dragging = false, typing = false;

  const show = () => {
    const v = model.get("value");
    label.textContent = model.get("description");
    slider.min = String(toPosition(model.get("min")));
    slider.max = String(toPosition(model.get("max")));
    if (!dragging) slider.value = String(toPosition(v));
    if (!typing) field.value = exact(v);
    el.dataset.value = exact(v);
    error.textContent = model.get("error");
    const off = model.get("disabled");
    slider.disabled = field.disabled = off;
    el.classList.toggle("bpmagic-disabled", off);
  };
  const send = (v) => {
    model.set({ value: v, base: model.get("version") });
    model.save_changes();
  };

  slider.addEventListener("pointerdown", () => { dragging = true; });
  const release = () => { dragging = false; show(); };
  slider.addEventListener("pointerup", release);
  slider.addEventListener("change", release);
  slider.addEventListener("input", () => {
    const v = rounded(fromPosition(parseFloat(slider.value)));
    field.value = exact(v);
    send(v);
  });
  field.addEventListener("focus", () => { typing = true; });
  const commit = () => {
    typing = false;
    const v = Number(field.value.trim());
    if (field.value.trim() === "" || !Number.isFinite(v)) {
      error.textContent = `not a number: ${field.value}`;
      field.value = exact(model.get("value"));
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

  const names = ["value", "min", "max", "log", "description", "disabled", "error", "version"];
  for (const name of names) model.on(`change:${name}`, show);
  show();
  return () => { for (const name of names) model.off(`change:${name}`, show); };
}

export default { render };
