// A case's productions follow a running one without a reload: every few seconds the
// page asks how each stands and updates its status and "123 of 456 messages"; once one
// has finished or stopped, the page reloads to offer its download or "Resume". Without
// scripts the "Reload" link does the same by hand.

const list = document.querySelector("#case-productions[data-progress]");
const PERIOD = 2000; // milliseconds between two questions

function running() {
  return list.querySelectorAll('tr[data-state="running"]').length > 0;
}

async function follow() {
  const answer = await fetch(list.dataset.progress, { headers: { Accept: "application/json" } });
  if (!answer.ok) return;
  for (const item of await answer.json()) {
    const row = list.querySelector(`tr[data-production="${item.id}"]`);
    if (!row) continue;
    if (row.dataset.state === "running" && item.state !== "running") {
      window.location.reload();
      return;
    }
    row.querySelector(".state").textContent = item.text;
    row.querySelector(".progress").textContent = item.progress;
  }
  if (running()) window.setTimeout(follow, PERIOD);
}

if (list && running()) window.setTimeout(follow, PERIOD);
