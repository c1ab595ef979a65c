// The "Copy code" button of a chat answer (an anywidget view: rsql_magic/chat/clipboard.py).
//
// A click puts the code on the clipboard right here in the browser, where the user's click
// gives the page the right to write it; the kernel could not. Where the clipboard is refused
// (no permission, not a secure context, a frontend that forbids it) the code is shown in a
// read-only text area with all of it selected, ready for Ctrl/Cmd+C. Either way the kernel
// hears the outcome ({event: "click", copied, reason}) and writes the note under the code.
// Text is only ever set as text (value, textContent), never as HTML.

function render({ model, el }) {
  // the button sits in the answer's row of buttons, the code area on a line of its own
  // below them: the view's own box is display: contents (its Layout), so both take part in
  // the row's flex layout
  el.classList.add("rsql-copy");

  const button = document.createElement("button");
  button.type = "button";
  button.className = "jupyter-widgets jupyter-button widget-button rsql-copy-button";
  button.title = "Copy the code to the clipboard";
  button.style.width = "auto";
  const icon = document.createElement("i");
  icon.className = "fa fa-copy";
  const label = document.createElement("span");
  label.textContent = "Copy code";
  button.append(icon, label);

  const area = document.createElement("div");
  area.className = "rsql-code";
  area.style.cssText = "order:1;flex:0 0 100%;width:100%;margin-top:4px";
  const text = document.createElement("textarea");
  text.readOnly = true;
  text.spellcheck = false;
  text.setAttribute("aria-label", "The answer's code");
  text.style.cssText = "width:100%;box-sizing:border-box;font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)";
  area.append(text);
  el.append(button, area);

  const sync = () => {
    const code = model.get("value");
    text.value = code;
    text.rows = Math.min(Math.max(code.split("\n").length, 2), 20);
    area.style.display = model.get("shown") ? "" : "none";
  };
  const select = () => {
    area.style.display = "";
    text.focus();
    text.select();
  };
  const onMessage = (msg) => {
    if (msg && msg.select) select();
  };
  model.on("change:value", sync);
  model.on("change:shown", sync);
  model.on("msg:custom", onMessage);
  sync();

  let timer = null;
  const flash = (words) => {
    label.textContent = words;
    clearTimeout(timer);
    timer = setTimeout(() => { label.textContent = "Copy code"; }, 1500);
  };

  button.addEventListener("click", async () => {
    let copied = false;
    let reason = "";
    try {
      if (!window.isSecureContext || !navigator.clipboard) {
        throw new Error("not a secure context (HTTPS or localhost)");
      }
      await navigator.clipboard.writeText(model.get("value"));
      copied = true;
    } catch (err) {
      reason = String((err && (err.name === "Error" ? err.message : err.name)) || err).slice(0, 80);
    }
    model.set("shown", true);
    model.save_changes();
    if (copied) {
      flash("Copied");
    } else {
      select();
    }
    model.send({ event: "click", copied, reason });
  });

  return () => {
    clearTimeout(timer);
    model.off("change:value", sync);
    model.off("change:shown", sync);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
