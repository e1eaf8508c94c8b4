// The graph view (anywidget): a Graphviz drawing laid out in the browser by Graphviz compiled to wasm, so it works
// in JupyterLab, Notebook 7 and VS Code without a system Graphviz. Two live layers over one layout:
//  - edge_weights {"in0->e3": w in [0, 1]}: edges coloured and thickened by gradient magnitude while a run trains;
//  - steps + index: the backprop step-through, one node of the backward pass at a time, in reverse topological order.
// Built into widgets/dist/graph_view.js by `npm run build:widgets` in labextension/ (esbuild bundles the wasm).
import { dotToSvg, titleOf } from '../../labextension/src/graphviz_svg';

const CSS = `
.bp-graph-view { font: 13px var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
.bp-graph-figure { overflow: auto; max-height: 70vh; }
.bp-graph-view g.node.bp-active > polygon, .bp-graph-view g.node.bp-active > ellipse,
.bp-graph-view g.node.bp-active > path { fill: #ffd54f; stroke: #e65100; stroke-width: 2.5px; }
.bp-graph-view g.node.bp-done > polygon, .bp-graph-view g.node.bp-done > path { fill: #e3f2e1; }
.bp-graph-view g.edge.bp-active > path { stroke: #e65100; stroke-width: 2.5px; }
.bp-graph-view g.edge.bp-active > polygon { fill: #e65100; stroke: #e65100; }
.bp-step-controls { display: flex; gap: 6px; align-items: center; margin: 4px 0; }
.bp-step-controls button { padding: 2px 10px; cursor: pointer; }
.bp-step-explain { font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap; margin: 4px 0;
  padding: 6px 8px; background: var(--jp-layout-color2, #f5f5f5); border-left: 3px solid #e65100; }
.bp-graph-status { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function edgeColour(w) {
  // the Python drawing's HSV(0, 0.15 + 0.85 w, 0.85): pale grey-pink for small gradients, red for the largest
  const v = 0.85 * 255, s = 0.15 + 0.85 * w;
  return `rgb(${v.toFixed(0)}, ${(v * (1 - s)).toFixed(0)}, ${(v * (1 - s)).toFixed(0)})`;
}

function render({ model, el: root }) {
  root.classList.add('bp-graph-view');
  root.append(el('style', null, CSS));
  const controls = el('div', 'bp-step-controls');
  const reset = el('button', null, '↺ Reset');
  const back = el('button', null, '◀ Back');
  const next = el('button', null, 'Step ▶');
  const position = el('span', 'bp-step-position');
  for (const [button, name] of [[reset, 'reset'], [back, 'back'], [next, 'step']]) {
    button.dataset.action = name;
    controls.append(button);
  }
  controls.append(position);
  const explain = el('div', 'bp-step-explain');
  const figure = el('div', 'bp-graph-figure');
  const status = el('div', 'bp-graph-status');
  root.append(controls, explain, figure, status);

  let svg = null;
  let drawn = 0;

  const setIndex = i => {
    const n = model.get('steps').length;
    model.set('index', Math.max(-1, Math.min(n - 1, i)));
    model.save_changes();
  };
  reset.onclick = () => setIndex(-1);
  back.onclick = () => setIndex(model.get('index') - 1);
  next.onclick = () => setIndex(model.get('index') + 1);

  function paintEdges() {
    if (!svg) return;
    const weights = model.get('edge_weights') || {};
    for (const g of svg.querySelectorAll('g.edge')) {
      const w = weights[titleOf(g)];
      if (w === undefined) continue;
      const colour = edgeColour(w);
      for (const p of g.querySelectorAll('path')) {
        p.setAttribute('stroke', colour);
        p.setAttribute('stroke-width', (0.5 + 3.5 * w).toFixed(2));
      }
      for (const p of g.querySelectorAll('polygon')) {
        p.setAttribute('stroke', colour);
        p.setAttribute('fill', colour);
      }
    }
  }

  function paintStep() {
    const steps = model.get('steps') || [];
    const index = model.get('index');
    controls.style.display = steps.length ? '' : 'none';
    explain.style.display = steps.length ? '' : 'none';
    const step = index >= 0 && index < steps.length ? steps[index] : null;
    position.textContent = steps.length ? `step ${index + 1} of ${steps.length}` : '';
    back.disabled = index < 0;
    next.disabled = index >= steps.length - 1;
    explain.textContent = step ? step.text : (steps.length ? model.get('intro') : '');
    root.dataset.activeNode = step ? step.node : '';
    if (!svg) return;
    const done = new Set(steps.slice(0, Math.max(0, index)).map(s => s.node));
    const edges = new Set(step ? step.edges : []);
    for (const g of svg.querySelectorAll('g.node')) {
      const id = titleOf(g);
      const active = step !== null && id === step.node;
      g.classList.toggle('bp-active', active);
      g.classList.toggle('bp-done', done.has(id));
      if (active) keepInView(g);
    }
    for (const g of svg.querySelectorAll('g.edge')) {
      g.classList.toggle('bp-active', edges.has(titleOf(g)));
    }
  }

  // a tall graph scrolls inside its own box: bring the highlighted node to the middle of it, not the page
  function keepInView(node) {
    if (figure.scrollHeight <= figure.clientHeight) return;
    const box = figure.getBoundingClientRect(), r = node.getBoundingClientRect();
    figure.scrollTop += r.top - box.top - box.height / 2 + r.height / 2;
  }

  async function draw() {
    const id = ++drawn;
    try {
      const drawing = await dotToSvg(model.get('dot'));
      if (id !== drawn) return; // a newer graph arrived while this one was laid out
      svg = drawing;
      figure.replaceChildren(svg);
      root.dataset.rendered = String(id);
    } catch (err) {
      svg = null;
      figure.replaceChildren(el('pre', null, `Graphviz could not draw this graph: ${err.message ?? err}`));
    }
    paintEdges();
    paintStep();
  }

  const onStatus = () => { status.textContent = model.get('status'); };
  model.on('change:dot', draw);
  model.on('change:edge_weights', paintEdges);
  model.on('change:index', paintStep);
  model.on('change:steps', paintStep);
  model.on('change:status', onStatus);
  onStatus();
  paintStep();
  draw();
  return () => {
    model.off('change:dot', draw);
    model.off('change:edge_weights', paintEdges);
    model.off('change:index', paintStep);
    model.off('change:steps', paintStep);
    model.off('change:status', onStatus);
  };
}

export default { render };
