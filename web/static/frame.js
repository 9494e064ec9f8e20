// Fits a message's HTML frame to the mail inside it (progressive enhancement: without
// scripts the frame keeps its fixed height and scrolls by itself).
//
// The frame is sandboxed with an opaque origin and runs one script, allowed by its hash,
// that posts {arsipFrameHeight: N}. Only messages whose source is that frame's own window
// are heeded, and the height is clamped, so no other window (and no absurd number) can
// resize anything.

const MIN = 48;
const MAX = 30000;

const frames = [...document.querySelectorAll("iframe.html-frame")];

window.addEventListener("message", (event) => {
  const frame = frames.find((candidate) => candidate.contentWindow === event.source);
  const height = Number(event.data?.arsipFrameHeight);
  if (!frame || !Number.isFinite(height)) return;
  // The stylesheet sizes borders in (border-box): add the frame's own to the mail's height.
  const borders = frame.offsetHeight - frame.clientHeight;
  frame.style.height = `${Math.min(MAX, Math.max(MIN, Math.ceil(height))) + borders}px`;
  frame.classList.add("fitted");
});

// The frame may have posted before this module ran: ask again, now and when it loads.
for (const frame of frames) {
  const ask = () => frame.contentWindow?.postMessage("height?", "*");
  frame.addEventListener("load", ask);
  ask();
}
