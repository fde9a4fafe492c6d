// Drawing helpers for the expert views' matrices (tokens × experts, layers × experts,
// classes × experts, experts × experts): one pixel per cell in a small off-screen image,
// scaled onto the visible canvas without smoothing, so a 48 × 128 or 128 × 128 matrix costs
// one putImageData and one drawImage however large it is drawn. Cells left at 0 (transparent)
// show the canvas background: "no value".

/** The theme's foreground and background as the canvases paint them. */
export function themeColors(): { fg: string; bg: string } {
  const style = getComputedStyle(document.body);
  return {
    fg: style.getPropertyValue("--vscode-foreground").trim() || "#888",
    bg: style.getPropertyValue("--vscode-editor-background").trim() || "#1e1e1e",
  };
}

/** Sizes `canvas` to width × height CSS pixels at the device pixel ratio, fills the background, returns its context in CSS pixels. */
export function prepareCanvas(canvas: HTMLCanvasElement, width: number, height: number, bg: string): CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(width * dpr)),
    h = Math.max(1, Math.round(height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const g = canvas.getContext("2d")!;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = bg;
  g.fillRect(0, 0, width, height);
  return g;
}

/** Pixels kept between two column labels (one label is up to "e127" or "#128" in the 9 px font). */
const COLUMN_LABEL_PX = 28;

/**
 * Labels a matrix's columns along the baseline y: column i (cellW pixels wide, from `left`)
 * gets label(i), every 1, 2, 4, 8, … columns so that the labels never overlap, and none runs
 * past the canvas's right edge. In the current fill style and font.
 */
export function labelColumns(g: CanvasRenderingContext2D, left: number, y: number, cellW: number, cols: number, label: (i: number) => string): void {
  const every = 2 ** Math.max(0, Math.ceil(Math.log2(COLUMN_LABEL_PX / cellW)));
  const right = g.canvas.width / (window.devicePixelRatio || 1);
  for (let i = 0; i < cols; i += every) {
    const text = label(i);
    if (left + i * cellW + g.measureText(text).width <= right) g.fillText(text, left + i * cellW, y);
  }
}

/** A cols × rows image of packed colours (colors.ts packRgb; 0 = transparent), drawn scaled. */
export class CellImage {
  private readonly offscreen = document.createElement("canvas");
  private image?: ImageData;
  private cols = 0;
  private rows = 0;

  /** Cleared pixels for a cols × rows matrix, row-major: px[row * cols + col]. */
  begin(cols: number, rows: number): Uint32Array {
    cols = Math.max(1, cols);
    rows = Math.max(1, rows);
    if (!this.image || this.cols !== cols || this.rows !== rows) {
      this.offscreen.width = cols;
      this.offscreen.height = rows;
      this.image = new ImageData(cols, rows);
      this.cols = cols;
      this.rows = rows;
    }
    const px = new Uint32Array(this.image.data.buffer);
    px.fill(0);
    return px;
  }

  /** Draws the matrix onto `g` filling the rectangle (x, y, width, height), each cell a sharp block. */
  drawTo(g: CanvasRenderingContext2D, x: number, y: number, width: number, height: number): void {
    if (!this.image) return;
    this.offscreen.getContext("2d")!.putImageData(this.image, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(this.offscreen, 0, 0, this.cols, this.rows, x, y, width, height);
  }
}
