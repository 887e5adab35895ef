// The batch editor: choose or drop images, see thumbnails, upload each one, then start the batch.
(function () {
  const form = document.getElementById("batch-form");
  if (!form) return;
  const input = document.getElementById("batch-files");
  const zone = document.getElementById("dropzone");
  const thumbs = document.getElementById("thumbs");
  const state = document.getElementById("batch-state");
  const problem = document.getElementById("upload-error");
  const csrf = form.querySelector("input[name=csrf_token]").value;
  let files = [];

  function show() {
    thumbs.replaceChildren(...files.map((file, i) => {
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = "Image " + (i + 1) + ": " + file.name;
      li.appendChild(img);
      return li;
    }));
    state.textContent = files.length ? files.length + " image(s) chosen" : "";
  }

  function add(list) {
    files = files.concat(Array.from(list).filter((f) => f.type.startsWith("image/")));
    show();
  }

  input.addEventListener("change", () => { files = []; add(input.files); });
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => {
    e.preventDefault(); zone.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, (e) => {
    e.preventDefault(); zone.classList.remove("dragover");
  }));
  zone.addEventListener("drop", (e) => add(e.dataTransfer.files));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    problem.hidden = true;
    if (!files.length) { fail("Choose at least one image."); return; }
    const button = document.getElementById("batch-submit");
    button.disabled = true;
    form.querySelectorAll("input[name=image_key]").forEach((el) => el.remove());
    try {
      for (const [i, file] of files.entries()) {
        state.textContent = "Uploading " + (i + 1) + " of " + files.length + "…";
        const body = new FormData();
        body.append("file", file);
        const answer = await fetch(form.dataset.uploadUrl, {method: "POST", body, headers: {"X-CSRF-Token": csrf}});
        const json = await answer.json().catch(() => ({error: file.name + ": upload failed (" + answer.status + ")"}));
        if (!answer.ok) { fail(json.error || file.name + ": upload failed"); button.disabled = false; return; }
        const hidden = document.createElement("input");
        hidden.type = "hidden"; hidden.name = "image_key"; hidden.value = json.key;
        form.appendChild(hidden);
      }
    } catch (err) {
      fail("Upload failed: " + err); button.disabled = false; return;
    }
    state.textContent = "Starting the batch…";
    form.submit();
  });

  function fail(message) {
    problem.textContent = message;
    problem.hidden = false;
    state.textContent = "";
  }
})();
