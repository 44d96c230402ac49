// The sign-in page is a plain form (POST /signin); nothing to fetch. An empty error line is
// hidden so that it takes no room.
const error = document.getElementById("signin-error");
if (error && !error.textContent.trim()) error.hidden = true;
