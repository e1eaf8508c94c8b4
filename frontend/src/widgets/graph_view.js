// The graph view (anywidget): a Graphviz drawing laid out in the browser by Graphviz compiled to wasm, so it works
// in JupyterLab, Notebook 7 and VS Code without a system Graphviz; the figure (fitted to the output, or saying
// what is outside its box; zoom and pan; composites opened by a click) is the MIME renderer's. Two live layers over
// one layout:
//  - edge_styles {"in0->e3": [colour, width]}: edges coloured and thickened by gradient magnitude (the kernel's
//    colours and widths, bpmagic/viz/dot.py, the same as its static drawing's);
//  - steps + index: the backprop step-through, one node of the backward pass at a time, in reverse topological order.
// Bundled into bpmagic/widgets/graph_view.js by `npm run build` in frontend/ (esbuild inlines the wasm).
// Its record (bpmagic/record.py) is what it drew: sent to the frontend after each drawing and change of colours.
import { GraphFigure } from '../shared/graph_figure';
import { titleOf } from '../shared/graphviz_svg';
import { hideRecord, sendRecord } from '../shared/record_protocol';

const CSS = `
.bp-graph-view { font: 13px var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
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

// the drawing as the record shows it: at its natural size, before any step is highlighted, with the edge colours
function recordSvg(svg) {
  const copy = svg.cloneNode(true);
  copy.removeAttribute('style');
  for (const g of copy.querySelectorAll('.bp-active, .bp-done')) g.classList.remove('bp-active', 'bp-done');
  return new XMLSerializer().serializeToString(copy);
}

function render({ model, el: root }) {
  root.classList.add('bp-graph-view');
  root.append(el('style', null, CSS));
  hideRecord(model.get('record_token'));
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
  const status = el('div', 'bp-graph-status');
  let svg = null;
  let drawn = 0;
  const figure = new GraphFigure({
    onDrawn: () => {
      svg = figure.svg;
      root.dataset.rendered = String(++drawn);
      paintEdges();
      paintStep();
    }
  });
  let recordTimer = null;
  const record = () => {
    clearTimeout(recordTimer);
    recordTimer = setTimeout(() => {
      if (!svg) return;
      const summary = model.get('status') || model.get('intro') || 'bpmagic graph view';
      sendRecord({ token: model.get('record_token'), svg: recordSvg(svg), summary });
    }, 300);  // colours arrive about once a second: record the settled drawing, not every frame
  };
  root.append(controls, explain, figure.node, status);

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
    record();
    const styles = model.get('edge_styles') || {};
    for (const g of svg.querySelectorAll('g.edge')) {
      const style = styles[titleOf(g)];
      if (style === undefined) continue;
      const [colour, width] = style;
      for (const p of g.querySelectorAll('path')) {
        p.setAttribute('stroke', colour);
        p.setAttribute('stroke-width', String(width));
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

  // a tall graph pans inside its own box: bring the highlighted node to the middle of it, not the page
  function keepInView(node) {
    figure.centerOn(node);
  }

  // the figure shows what Graphviz could not draw
  const draw = () => figure.show(model.get('dot'), model.get('dot_expanded')).catch(() => { svg = null; });

  const onStatus = () => { status.textContent = model.get('status'); record(); };
  model.on('change:dot', draw);
  model.on('change:dot_expanded', draw);
  model.on('change:edge_styles', paintEdges);
  model.on('change:index', paintStep);
  model.on('change:steps', paintStep);
  model.on('change:status', onStatus);
  const onRecord = () => sendRecord({ token: model.get('record_token'), ...model.get('record') });
  model.on('change:record', onRecord);
  onStatus();
  paintStep();
  draw();
  return () => {
    model.off('change:dot', draw);
    model.off('change:dot_expanded', draw);
    model.off('change:edge_styles', paintEdges);
    model.off('change:index', paintStep);
    model.off('change:steps', paintStep);
    model.off('change:status', onStatus);
    model.off('change:record', onRecord);
    clearTimeout(recordTimer);
  };
}

export default { render };
