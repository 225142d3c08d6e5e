// Ticking a route on the user inspector re-fuses at once: the form is a plain GET, so the
// page's address keeps the choice (and works without JavaScript through its submit button).
document.querySelectorAll("form[data-autosubmit]").forEach((form) => {
  form.addEventListener("change", () => form.requestSubmit());
});
