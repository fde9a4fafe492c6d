// The routing panel's HTML, rendered by the extension host (pure function, no vscode import).
// Strict CSP: scripts and styles only from the extension's own files with this nonce, no
// inline handlers, no eval; images only from the webview's own origin or data: URLs.

export interface PanelHtmlOptions {
  scriptUri: string;
  styleUri: string;
  cspSource: string;
  nonce: string;
}

export function contentSecurityPolicy(o: Pick<PanelHtmlOptions, "cspSource" | "nonce">): string {
  return [
    "default-src 'none'",
    `img-src ${o.cspSource} data:`,
    `style-src ${o.cspSource} 'nonce-${o.nonce}'`,
    `font-src ${o.cspSource}`,
    `script-src 'nonce-${o.nonce}'`,
  ].join("; ");
}

export function renderPanelHtml(o: PanelHtmlOptions): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(o)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${o.styleUri}" nonce="${o.nonce}">
<title>MoE Lens routing</title>
</head>
<body>
<main id="app" aria-label="MoE Lens routing panel"><p class="empty">Run “MoE Lens: Trace Document” to see routing here.</p></main>
<script nonce="${o.nonce}" src="${o.scriptUri}"></script>
</body>
</html>`;
}
