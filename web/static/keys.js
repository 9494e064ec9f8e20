// Keyboard shortcuts, as Gmail's: every page works without them (and without scripts).
//
//   /      focus the search box
//   j, k   next / previous result, or next / previous message of the thread
//   o      open the selected result (Enter does too)
//   u      back to the results (or the list) this page came from
//   ?      show the shortcuts
//
// The links they follow are the page's own: rel="next" / rel="prev" and rel="up".
// Keys typed into a field, or with a modifier, are left alone.

const results = () => [...document.querySelectorAll(".results > li")];

function typing(event) {
  const target = event.target;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function follow(rel) {
  const link = document.querySelector(`a[rel~="${rel}"]`);
  if (link) window.location.assign(link.href);
  return Boolean(link);
}

function select(step) {
  const items = results();
  if (!items.length) return follow(step > 0 ? "next" : "prev");
  const current = items.findIndex((item) => item.classList.contains("current"));
  const next = Math.min(items.length - 1, Math.max(0, current + step));
  if (current >= 0) items[current].classList.remove("current");
  const item = items[current < 0 ? 0 : next];
  item.classList.add("current");
  item.scrollIntoView({ block: "nearest" });
  item.querySelector("a")?.focus({ preventScroll: true });
  return true;
}

function open() {
  const current = document.querySelector(".results > li.current a");
  if (current) window.location.assign(current.href);
  return Boolean(current);
}

function help() {
  const dialog = document.getElementById("keys");
  if (dialog && !dialog.open) dialog.showModal();
  return Boolean(dialog);
}

const actions = {
  "/": () => {
    const box = document.querySelector('.site input[type="search"]');
    box?.focus();
    box?.select();
    return Boolean(box);
  },
  j: () => select(1),
  k: () => select(-1),
  o: open,
  u: () => follow("up"),
  "?": help,
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
  const action = actions[event.key];
  if (action && action()) event.preventDefault();
});
