/**
 * DOT → SVG in the browser with Graphviz compiled to WebAssembly (@hpcc-js/wasm-graphviz, wasm inlined).
 * Shared by the JupyterLab MIME renderer and the anywidget graph view (bundled into it by esbuild).
 */
import type { Graphviz } from '@hpcc-js/wasm-graphviz';

let loading: Promise<Graphviz> | null = null;

/** One Graphviz instance per page: compiling the wasm module costs ~100 ms, so do it once, lazily. */
export function graphviz(): Promise<Graphviz> {
  if (!loading) {
    loading = import('@hpcc-js/wasm-graphviz').then(m => m.Graphviz.load());
  }
  return loading;
}

/**
 * Remove what could run code or leave the page: DOT from an untrusted notebook may carry URL/href attributes,
 * which Graphviz turns into links. Drawings need neither scripts nor external links.
 */
export function sanitizeSvg(svg: SVGSVGElement): SVGSVGElement {
  svg.querySelectorAll('script, foreignObject, iframe').forEach(n => n.remove());
  for (const node of [svg, ...Array.from(svg.querySelectorAll('*'))]) {
    for (const attr of Array.from(node.attributes)) {
      const name = attr.name.toLowerCase();
      const isLink = name === 'href' || name.endsWith(':href');
      if (name.startsWith('on') || (isLink && !attr.value.startsWith('#'))) {
        node.removeAttribute(attr.name);
      }
    }
  }
  return svg;
}

/** Lay out `dot` and return the drawing as a sanitized <svg> element (throws Graphviz's message on bad DOT). */
export async function dotToSvg(dot: string): Promise<SVGSVGElement> {
  const text = (await graphviz()).layout(dot, 'svg', 'dot');
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const svg = doc.documentElement as unknown as SVGSVGElement;
  if (svg.nodeName !== 'svg') {
    throw new Error('Graphviz produced no SVG');
  }
  // Fit the cell's width instead of overflowing it (the top complaint about graph drawings in notebooks).
  svg.style.maxWidth = '100%';
  svg.style.height = 'auto';
  return sanitizeSvg(document.importNode(svg, true));
}

/** The Graphviz id (its <title>) of every node or edge group in a drawing: "e3", "in0->e3". */
export function titleOf(group: Element): string {
  return group.querySelector(':scope > title')?.textContent ?? '';
}
