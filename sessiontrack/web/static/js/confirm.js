// The confirmation dialog (index.html's <dialog id="confirm-dialog">), shared by the views.

/** A modal confirmation; resolves true when confirmed. Focus starts on Cancel. */
export function confirmDialog(title, text, okLabel) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });
}
