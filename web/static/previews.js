// An attachment preview that cannot be shown (a broken or hostile PDF, a damaged
// picture) becomes the words "No preview" instead of a broken-image icon. Without
// scripts the picture's alt text says the same.

function fallBack(image) {
  const note = document.createElement("p");
  note.className = "hint no-preview";
  note.textContent = image.dataset.fallback || image.alt;
  image.replaceWith(note);
}

for (const image of document.querySelectorAll(".attachments img.preview")) {
  if (image.complete && image.naturalWidth === 0) fallBack(image);
  else image.addEventListener("error", () => fallBack(image), { once: true });
}
