// The portal's only script, served from /static/app.js (the Content-Security-Policy allows no inline
// script). It drives the MFA steps through the JSON API under /api; the session cookie goes along
// by itself (same origin), and the API's demand for Content-Type: application/json is its CSRF
// defence.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);

  async function api(path, body) {
    let response;
    try {
      response = await fetch('/api' + path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body || {}),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (_) {
      return { status: 0, ok: false, json: {}, retryAfter: null };
    }
    // A call that changed the session's id (a step-up, new backup codes) changed its CSRF token
    // too: the page's forms (Sign out) get the new one.
    const csrf = response.headers.get('X-CSRF-Token');
    if (csrf) {
      for (const field of document.querySelectorAll('input[name="csrf"]')) field.value = csrf;
    }
    let json = {};
    try {
      json = await response.json();
    } catch (_) {
      json = {};
    }
    return {
      status: response.status,
      ok: response.ok,
      json: json || {},
      retryAfter: response.headers.get('Retry-After'),
    };
  }

  function explain(result) {
    switch (result.json.error) {
      case 'invalid_code':
        return 'That code is not valid. Check that the clock on your phone is right, and enter the newest code.';
      case 'locked':
        return 'Too many failed attempts. Try again in ' + (result.retryAfter || 'a few') + ' seconds.';
      case 'enrollment_expired':
        return 'This set-up has expired. Start again with Configure.';
      case 'mfa_disabled':
        return 'Your organisation has switched MFA off, so there is nothing to set up.';
      case 'unauthenticated':
      case 'session_ended':
        return 'Your session has ended. Sign in again.';
      case 'step_up_required':
        return 'Confirm it is you first: enter a fresh code.';
      case 'invalid_body':
      case 'malformed_json':
        return 'Enter the code first.';
      default:
        if (result.status === 0) return 'The portal cannot be reached. Check your connection and try again.';
        return result.json.message || 'Something went wrong. Try again.';
    }
  }

  function say(id, text) {
    const element = $(id);
    if (!element) return;
    element.textContent = text || '';
    element.hidden = !text;
  }

  function onEnter(input, action) {
    if (!input) return;
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        action();
      }
    });
  }

  // Runs `action` with `button` disabled, so a double click sends one request.
  async function busy(button, action) {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await action();
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  // Shows one step of the set-up card and hides the others.
  function step(id) {
    for (const element of document.querySelectorAll('.step')) {
      element.hidden = element.id !== id;
    }
    const shown = $(id);
    const input = shown && shown.querySelector('input');
    if (input) input.focus();
  }

  function showQr(svgText, target) {
    const parsed = new DOMParser().parseFromString(svgText, 'image/svg+xml');
    const svg = parsed.documentElement;
    if (!svg || svg.nodeName !== 'svg') return;
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'QR code for your authenticator app');
    $(target || 'qr').replaceChildren(document.importNode(svg, true));
  }

  function setupPage() {
    const configure = $('configure');
    configure.addEventListener('click', () =>
      busy(configure, async () => {
        say('configure-error', '');
        const result = await api('/mfa/enrollment');
        if (result.status === 201) {
          showQr(result.json.qr_svg);
          $('secret').textContent = result.json.secret;
          $('otpauth-link').href = result.json.otpauth_uri;
          $('code').value = '';
          say('code-error', '');
          step('step-scan');
        } else if (result.json.error === 'already_configured') {
          location.assign('/');
        } else {
          say('configure-error', explain(result));
        }
      }),
    );
    $('next').addEventListener('click', () => step('step-code'));
    $('back').addEventListener('click', () => step('step-scan'));
    const verify = $('verify');
    const confirm = () =>
      busy(verify, async () => {
        say('code-error', '');
        const result = await api('/mfa/enrollment/confirm', { code: $('code').value });
        if (result.ok) {
          step('step-enabled');
        } else if (result.json.error === 'enrollment_expired' || result.json.error === 'not_pending') {
          step('step-start');
          say('configure-error', explain(result));
        } else if (result.json.error === 'unauthenticated') {
          location.assign('/signin');
        } else {
          say('code-error', explain(result));
        }
      });
    verify.addEventListener('click', confirm);
    onEnter($('code'), confirm);
    backupCodes(() => step('step-backup'));
  }

  // What runs once the step-up panel's fresh code is accepted, when an action asked for it.
  let afterStepUp = null;

  // Shows the step-up panel for `purpose` (naming the `action` for the customer); `then` runs once
  // the fresh code is accepted.
  function askStepUp(purpose, action, then) {
    const panel = $('step-up');
    if (!panel) return false;
    panel.dataset.purpose = purpose;
    if ($('step-up-action')) $('step-up-action').textContent = action;
    afterStepUp = then;
    say('step-up-error', '');
    panel.hidden = false;
    $('step-up-code').focus();
    return true;
  }

  // "Confirm it's you": a fresh code for the panel's purpose (from the app, or a backup code, told
  // apart by its letters), sent to POST /api/mfa/step-up; then what asked for it runs (or `passed`).
  function stepUp(passed) {
    const panel = $('step-up');
    const confirm = $('step-up-verify');
    if (!panel || !confirm) return;
    const send = () =>
      busy(confirm, async () => {
        say('step-up-error', '');
        const typed = $('step-up-code').value.trim();
        const body = /[A-Za-z-]/.test(typed)
          ? { purpose: panel.dataset.purpose, backup_code: typed }
          : { purpose: panel.dataset.purpose, code: typed };
        const result = await api('/mfa/step-up', body);
        if (result.ok) {
          $('step-up-code').value = '';
          panel.hidden = true;
          const next = afterStepUp || passed;
          afterStepUp = null;
          await next();
        } else if (result.json.error === 'unauthenticated' || result.json.error === 'session_ended') {
          location.assign('/signin');
        } else {
          say('step-up-error', explain(result));
        }
      });
    confirm.addEventListener('click', send);
    onEnter($('step-up-code'), send);
  }

  // "Generate Backup Codes", then Download and Copy.
  function backupCodes(reveal) {
    const generate = $('generate-backup-codes');
    if (!generate) return;

    let codes = [];
    const text = () =>
      'Acme Billing backup codes for ' +
      (($('setup') && $('setup').dataset.account) || $('account-email')?.textContent || 'your account') +
      '\nEach code signs you in once. Generating a new set voids these.\n\n' +
      codes.join('\n') +
      '\n';
    generate.addEventListener('click', () =>
      busy(generate, async () => {
        say('backup-error', '');
        const result = await api('/mfa/backup-codes');
        if (result.status === 201 && Array.isArray(result.json.codes)) {
          codes = result.json.codes;
          $('backup-codes').replaceChildren(
            ...codes.map((code) => {
              const item = document.createElement('li');
              item.textContent = code;
              return item;
            }),
          );
          const remaining = $('backup-codes-remaining');
          if (remaining) remaining.textContent = String(codes.length);
          say('copy-status', '');
          reveal();
        } else if (result.json.error === 'step_up_required') {
          // A stale session confirms it is the customer, then the codes are made.
          if (!askStepUp('backup_codes', 'Making new backup codes', async () => generate.click())) {
            say('backup-error', explain(result));
          }
        } else {
          say('backup-error', explain(result));
        }
      }),
    );
    $('download').addEventListener('click', () => {
      const url = URL.createObjectURL(new Blob([text()], { type: 'text/plain' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = 'acme-billing-backup-codes.txt';
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
    $('copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(text());
        say('copy-status', 'Copied.');
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents($('backup-codes'));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        say('copy-status', 'Selected: press Ctrl+C (or Cmd+C) to copy.');
      }
    });
    const proceed = $('continue');
    if (proceed) {
      // Continue only once the customer says the codes are saved.
      const saved = $('codes-saved');
      saved.addEventListener('change', () => {
        proceed.disabled = !saved.checked;
      });
      proceed.addEventListener('click', () => location.assign('/account'));
    }
  }

  function verifyPage() {
    const send = (button, body) =>
      busy(button, async () => {
        say('error', '');
        const result = await api('/mfa/verify', body);
        if (result.ok) {
          location.assign('/account');
        } else if (result.json.error === 'unauthenticated') {
          location.assign('/signin');
        } else {
          say('error', explain(result));
        }
      });
    const verify = $('verify');
    const sendCode = () => send(verify, { code: $('code').value });
    verify.addEventListener('click', sendCode);
    onEnter($('code'), sendCode);
    const verifyBackup = $('verify-backup');
    const sendBackup = () => send(verifyBackup, { backup_code: $('backup-code').value });
    verifyBackup.addEventListener('click', sendBackup);
    onEnter($('backup-code'), sendBackup);
    const swap = (backup) => {
      $('totp-panel').hidden = backup;
      $('backup-panel').hidden = !backup;
      say('error', '');
      $(backup ? 'backup-code' : 'code').focus();
    };
    $('use-backup-code').addEventListener('click', () => swap(true));
    $('use-code').addEventListener('click', () => swap(false));
  }

  // "Replace authenticator": step up if asked, show the new secret, confirm with the new app.
  function replaceAuthenticator() {
    const start = $('replace-authenticator');
    if (!start) return;
    start.addEventListener('click', () =>
      busy(start, async () => {
        say('replace-error', '');
        const result = await api('/mfa/authenticator/replacement');
        if (result.status === 201) {
          showQr(result.json.qr_svg, 'replace-qr');
          $('replace-secret').textContent = result.json.secret;
          $('replace-code').value = '';
          $('replace-scan').hidden = false;
          $('replace-code').focus();
        } else if (result.json.error === 'step_up_required') {
          askStepUp('replace_authenticator', 'Replacing your authenticator app', async () => start.click());
        } else {
          say('replace-error', explain(result));
        }
      }),
    );
    const confirm = $('replace-confirm');
    const send = () =>
      busy(confirm, async () => {
        say('replace-error', '');
        const result = await api('/mfa/authenticator/replacement/confirm', { code: $('replace-code').value });
        if (result.ok) {
          $('replace-scan').hidden = true;
          say('replace-done', $('replace-done').textContent);
        } else if (result.json.error === 'unauthenticated' || result.json.error === 'session_ended') {
          location.assign('/signin');
        } else if (result.json.error === 'enrollment_expired' || result.json.error === 'not_pending') {
          $('replace-scan').hidden = true;
          say('replace-error', 'This set-up has expired. Start again with Replace authenticator; your old app still works.');
        } else {
          say('replace-error', explain(result));
        }
      });
    confirm.addEventListener('click', send);
    onEnter($('replace-code'), send);
  }

  function accountPage() {
    stepUp(async () => {});
    backupCodes(() => {
      $('step-backup').hidden = false;
    });
    replaceAuthenticator();
  }

  function paymentPage() {
    // Past the step-up age the page shows "Confirm it's you" instead of the form.
    stepUp(async () => location.reload());
    const save = $('save-card');
    if (!save) return;
    const send = () =>
      busy(save, async () => {
        say('card-error', '');
        say('card-saved', '');
        const result = await api('/billing/payment-method', {
          card_number: $('card-number').value,
          expiry: $('card-expiry').value,
        });
        if (result.ok) {
          $('card-on-file').textContent = result.json.card;
          $('card-number').value = '';
          $('card-expiry').value = '';
          say('card-saved', 'Saved: the card ' + result.json.card + ' is on file.');
        } else if (result.json.error === 'step_up_required') {
          location.reload();
        } else if (result.json.error === 'unauthenticated' || result.json.error === 'session_ended') {
          location.assign('/signin');
        } else if (result.json.error === 'invalid_body') {
          say('card-error', 'Check the card number and the expiry (MM/YY).');
        } else {
          say('card-error', explain(result));
        }
      });
    save.addEventListener('click', send);
    onEnter($('card-expiry'), send);
  }

  const pages = { setup: setupPage, verify: verifyPage, account: accountPage, payment: paymentPage };
  const start = pages[document.body.dataset.page];
  if (start) start();
})();
