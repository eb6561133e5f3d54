//! Sessions: random 256-bit ids in a cookie, the state on the server, in memory.
//!
//! The cookie is `HttpOnly`, `SameSite=Strict` and `Path=/`; behind TLS it is also `Secure` and named
//! with the `__Host-` prefix (so no subdomain can set it). Each session carries a CSRF token for the
//! HTML forms of the signed-in pages, and a sign-in or a passed second factor gives the session a
//! fresh id (OWASP Session Management Cheat Sheet: renew the id on any privilege change), so an id
//! planted before sign-in is worth nothing after it.
//!
//! Loading the sign-in form makes no session (its token is signed instead, see `signin_token`):
//! otherwise anyone could fill the store by loading a page. The sessions that never signed in are
//! the ones a sign-out leaves to show its message. A full store makes room by removing the least
//! recently used session, those that never signed in first, taken from an ordered index in
//! logarithmic time: a creation never walks the whole store under its lock.
//!
//! In memory is enough for one process. Several portal nodes behind a load balancer need a shared
//! session store (the database, Redis...) instead, with the same interface.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use data_encoding::BASE64URL_NOPAD;
use mfa_core::{Actor, Clock, CustomerId, MfaPassed, MfaSession, OrgId};
use mfa_http::{Caller, HostError, MfaHost};
use subtle::ConstantTimeEq;

use crate::accounts::Role;

/// The answer header that gives a page the new CSRF token of a session whose id changed under it.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Random bytes in a session id or a CSRF token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Their length in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// A fresh 256-bit random token, base64url without padding.
pub(crate) fn token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::fill(&mut bytes[..]);
    BASE64URL_NOPAD.encode(&bytes)
}

/// Whether `text` has the shape of a token: anything else is not looked up at all.
fn is_token(text: &str) -> bool {
    text.len() == TOKEN_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A session id. Its `Debug` is redacted: the id is a bearer credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// The id as the cookie carries it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(redacted)")
    }
}

/// Who a session belongs to, once the password checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The account's organisation.
    pub org: OrgId,
    /// The account's email: the customer id in MFA.
    pub email: CustomerId,
    /// Customer or administrator.
    pub role: Role,
    /// A customer's MFA session, from the password check on (administrators have no second factor
    /// in this example: see the README). Every protected request checks it against the
    /// customer's record (`Portal::check`), so a reset, a change of factor or the organisation
    /// switching MFA on takes effect at once.
    pub mfa: Option<MfaSession>,
}

impl SignedIn {
    /// Whether the session itself says it got past MFA: for the page header only. Whether it may
    /// see the account is decided by checking it against the customer's record.
    #[must_use]
    pub fn looks_complete(&self) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Customer => self.mfa.is_some_and(|mfa| mfa.passed().is_some()),
        }
    }
}

/// One session's state.
#[derive(Clone)]
pub struct Session {
    /// The CSRF token the session's HTML forms carry.
    csrf: String,
    /// The account, once signed in.
    pub user: Option<SignedIn>,
    /// A one-time message for the next page.
    pub flash: Option<String>,
    created: u64,
    last_seen: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The CSRF token, to put in a form.
    #[must_use]
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `token` is this session's CSRF token, compared in constant time.
    #[must_use]
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// How long sessions live, and how many there may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused this long is gone (30 minutes).
    pub idle_secs: u64,
    /// Any session is gone after this long (12 hours); a sign-in form, which keeps no session,
    /// works for as long.
    pub max_age_secs: u64,
    /// At most this many sessions at once (100,000). When full, a new one takes the place of the
    /// least recently used session that never signed in (the one a sign-out leaves for its
    /// message), else of the least recently used of all.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_secs: 30 * 60,
            max_age_secs: 12 * 3600,
            max_sessions: 100_000,
        }
    }
}

/// A session's place in the eviction order: sessions that never signed in first, then by last use,
/// then by when they were stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    signed_in: bool,
    last_seen: u64,
    /// Unique per stored session: ties in `last_seen` are common (whole seconds).
    seq: u64,
}

/// A stored session and its place in the order.
struct Stored {
    session: Session,
    seq: u64,
}

impl Stored {
    const fn place(&self) -> Place {
        Place {
            signed_in: self.session.user.is_some(),
            last_seen: self.session.last_seen,
            seq: self.seq,
        }
    }
}

/// The sessions, and the same ids in eviction order, so that a full store makes room by taking the
/// first instead of searching all of them. Every change keeps the two in step.
#[derive(Default)]
struct Table {
    map: HashMap<SessionId, Stored>,
    order: BTreeMap<Place, SessionId>,
    next_seq: u64,
    /// Sessions looked at to make room in a full store, for the tests: one per session removed.
    #[cfg(test)]
    examined: usize,
}

impl Table {
    fn insert(&mut self, id: SessionId, session: Session) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let stored = Stored { session, seq };
        self.order.insert(stored.place(), id.clone());
        if let Some(old) = self.map.insert(id, stored) {
            // A 256-bit random id met twice: keep the order right all the same.
            self.order.remove(&old.place());
        }
    }

    fn remove(&mut self, id: &SessionId) -> Option<Session> {
        let stored = self.map.remove(id)?;
        self.order.remove(&stored.place());
        Some(stored.session)
    }

    /// Changes a session with `change`, moving it in the order if its place changed.
    fn change<T>(&mut self, id: &SessionId, change: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let stored = self.map.get_mut(id)?;
        let before = stored.place();
        let result = change(&mut stored.session);
        let after = stored.place();
        if after != before {
            self.order.remove(&before);
            self.order.insert(after, id.clone());
        }
        Some(result)
    }

    /// Removes the first session in the order.
    fn evict_first(&mut self) -> bool {
        #[cfg(test)]
        {
            self.examined += 1;
        }
        match self.order.pop_first() {
            Some((_, id)) => {
                self.map.remove(&id);
                true
            }
            None => false,
        }
    }
}

/// The session store, in memory.
pub struct Sessions {
    table: Mutex<Table>,
    limits: SessionLimits,
    secure: bool,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("count", &self.len())
            .field("limits", &self.limits)
            .field("secure", &self.secure)
            .finish()
    }
}

impl Sessions {
    /// An empty store. `secure` (the portal is served over TLS) adds `Secure` and the `__Host-`
    /// prefix to the cookie.
    #[must_use]
    pub fn new(limits: SessionLimits, secure: bool) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            limits,
            secure,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change under the lock is one insert, remove or field update of the map with the same
        // of the order, none of which can panic half-way, so a panic elsewhere while it was held
        // cannot have left a session half-changed.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cookie's name.
    #[must_use]
    pub const fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-portal_session"
        } else {
            "portal_session"
        }
    }

    /// How many sessions there are (expired ones included until they are swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// The accounts of the signed-in sessions, with whether each passed MFA: for a status page, or a
    /// test that checks nothing changed.
    #[must_use]
    pub fn signed_in(&self) -> Vec<SignedIn> {
        self.lock()
            .map
            .values()
            .filter_map(|stored| stored.session.user.clone())
            .collect()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, session: &Session, now: u64) -> bool {
        now.saturating_sub(session.last_seen) >= self.limits.idle_secs
            || now.saturating_sub(session.created) >= self.limits.max_age_secs
            // A clock that went back by more than a session's life: start over.
            || session.created > now.saturating_add(self.limits.idle_secs)
    }

    /// Forgets the MFA session of the session stored under `id` (it ended): until a sign-in or an
    /// MFA pass gives it one again, nothing MFA protects lets it in.
    pub fn end_mfa(&self, id: &SessionId) {
        let _ = self.lock().change(id, |session| {
            if let Some(user) = &mut session.user {
                user.mfa = None;
            }
        });
    }

    /// The CSRF token of the session stored under `id`.
    #[must_use]
    pub fn csrf_of(&self, id: &SessionId) -> Option<String> {
        self.lock()
            .map
            .get(id)
            .map(|stored| stored.session.csrf.clone())
    }

    /// The session the request's cookie names, if it is live; its last use becomes `now`. Every
    /// cookie of the right name is tried (a browser may send two after a subdomain set one), and
    /// values that are not tokens are not looked up.
    #[must_use]
    pub fn lookup(&self, headers: &HeaderMap, now: u64) -> Option<(SessionId, Session)> {
        let name = self.cookie_name();
        let mut table = self.lock();
        for value in cookie_values(headers, name) {
            let id = SessionId(value.to_owned());
            let Some(stored) = table.map.get(&id) else {
                continue;
            };
            if self.expired(&stored.session, now) {
                table.remove(&id);
                continue;
            }
            let touched = table.change(&id, |session| {
                session.last_seen = now;
                session.clone()
            });
            if let Some(session) = touched {
                return Some((id, session));
            }
        }
        None
    }

    /// A new session, for `user` (or nobody yet), with a fresh id and CSRF token. A full store makes
    /// room by removing the first sessions of its order (see [`SessionLimits::max_sessions`]):
    /// one look per session removed, whatever the number of sessions.
    pub fn create(&self, user: Option<SignedIn>, now: u64) -> (SessionId, Session) {
        let session = Session {
            csrf: token(),
            user,
            flash: None,
            created: now,
            last_seen: now,
        };
        let id = SessionId(token());
        let mut table = self.lock();
        while table.map.len() >= self.limits.max_sessions.max(1) {
            if !table.evict_first() {
                break;
            }
        }
        table.insert(id.clone(), session.clone());
        (id, session)
    }

    /// Drops every expired session. A pass over them all: for a timer (once a minute in `main`),
    /// not for a request.
    pub fn sweep(&self, now: u64) {
        let mut table = self.lock();
        let expired: Vec<SessionId> = table
            .map
            .iter()
            .filter(|(_, stored)| self.expired(&stored.session, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            table.remove(id);
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &SessionId) {
        self.lock().remove(id);
    }

    /// Changes a session in place; whether it still existed.
    pub fn update(&self, id: &SessionId, change: impl FnOnce(&mut Session)) -> bool {
        self.lock().change(id, change).is_some()
    }

    /// Moves a session to a fresh id with a fresh CSRF token, after `change` accepted it (returned
    /// `true`) and changed it; the old id stops working. `None` if the session is gone or `change`
    /// refused (it must then leave the session as it was: it stays under its old id).
    ///
    /// The session's CSRF token changes with its id.
    pub fn rotate(
        &self,
        id: &SessionId,
        now: u64,
        change: impl FnOnce(&mut Session) -> bool,
    ) -> Option<SessionId> {
        let mut table = self.lock();
        let mut session = table.remove(id)?;
        if !change(&mut session) {
            table.insert(id.clone(), session);
            return None;
        }
        session.csrf = token();
        session.last_seen = now;
        let new_id = SessionId(token());
        table.insert(new_id.clone(), session);
        Some(new_id)
    }

    /// The `Set-Cookie` value that gives the browser `id`.
    #[must_use]
    pub fn set_cookie(&self, id: &SessionId) -> HeaderValue {
        self.cookie(id.as_str(), "")
    }

    /// The `Set-Cookie` value that makes the browser forget the session.
    #[must_use]
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", "; Max-Age=0")
    }

    fn cookie(&self, value: &str, extra: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{extra}",
            self.cookie_name()
        );
        // A token is base64url and the rest is fixed ASCII: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The values of the cookies named `name` in every `Cookie` header, that have the shape of a token.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
        .filter(|value| is_token(value))
        // No request needs more than a couple; a header stuffed with thousands is not worth reading.
        .take(8)
}

/// The portal's side of `mfa-http`: who is calling, from the session cookie, and the session
/// upgrade when a code passes.
pub struct PortalHost<C> {
    sessions: Arc<Sessions>,
    clock: C,
}

impl<C> fmt::Debug for PortalHost<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalHost")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> PortalHost<C> {
    /// The host over `sessions`, reading time from `clock`.
    #[must_use]
    pub const fn new(sessions: Arc<Sessions>, clock: C) -> Self {
        Self { sessions, clock }
    }

    fn now(&self) -> u64 {
        self.clock.now().as_secs()
    }
}

impl<C: Clock + 'static> MfaHost for PortalHost<C> {
    async fn caller(&self, parts: &mut Parts) -> Result<Caller, HostError> {
        let (_, session) = self
            .sessions
            .lookup(&parts.headers, self.now())
            .ok_or(HostError::Unauthenticated)?;
        let user = session.user.ok_or(HostError::Unauthenticated)?;
        Ok(match user.role {
            Role::Customer => {
                let session = user.mfa.ok_or(HostError::Unauthenticated)?;
                Caller::customer(user.org, user.email, session)
            }
            Role::Admin => Caller::admin(user.org, Actor::from(&user.email)),
        })
    }

    async fn mfa_passed(
        &self,
        parts: &mut Parts,
        proof: MfaPassed,
    ) -> Result<HeaderMap, HostError> {
        let now = self.now();
        let (id, _) = self
            .sessions
            .lookup(&parts.headers, now)
            .ok_or(HostError::Unauthenticated)?;
        let new_id = self
            .sessions
            .rotate(&id, now, |session| match &mut session.user {
                Some(user)
                    if user.role == Role::Customer
                        && &user.email == proof.customer()
                        && &user.org == proof.org() =>
                {
                    user.mfa = Some(proof.session());
                    true
                }
                _ => false,
            })
            .ok_or(HostError::Forbidden)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::SET_COOKIE, self.sessions.set_cookie(&new_id));
        // The page that made the call stays open (a step-up, new backup codes): its forms' token
        // was the old session's, so it gets the new one to put in their place (`/static/app.js`).
        // Only this origin's script can read an answer's headers.
        if let Some(csrf) = self
            .sessions
            .csrf_of(&new_id)
            .and_then(|csrf| HeaderValue::from_str(&csrf).ok())
        {
            headers.insert(CSRF_HEADER, csrf);
        }
        Ok(headers)
    }

    /// A reset or a change of factor ended the session's MFA: it is forgotten, so the session is
    /// signed in to nothing (every route asks it to sign in again; the pages remove it). The
    /// session itself and its cookie stay, on purpose: when the change that ended it was this very
    /// session's (a confirmation sent twice, one copy refused because the other won), the winning
    /// request puts the new MFA session in right after, under a fresh id (`mfa_passed`), and a
    /// removed session or a cleared cookie would sign the customer out of a change that succeeded.
    async fn session_ended(&self, parts: &mut Parts) -> Result<HeaderMap, HostError> {
        if let Some((id, _)) = self.sessions.lookup(&parts.headers, self.now()) {
            self.sessions.end_mfa(&id);
        }
        Ok(HeaderMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> SignedIn {
        SignedIn {
            org: OrgId::new("acme").unwrap(),
            email: CustomerId::new("alice@acme.test").unwrap(),
            role: Role::Customer,
            mfa: None,
        }
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn cookies_are_strict_and_secure_when_asked() {
        let plain = Sessions::new(SessionLimits::default(), false);
        let (id, _) = plain.create(None, 0);
        let cookie = plain.set_cookie(&id);
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with(&format!("portal_session={}", id.as_str())));
        assert!(cookie.contains("; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        let secure = Sessions::new(SessionLimits::default(), true);
        let (id, _) = secure.create(None, 0);
        let cookie = secure.set_cookie(&id);
        assert!(
            cookie
                .to_str()
                .unwrap()
                .starts_with("__Host-portal_session=")
        );
        assert!(cookie.to_str().unwrap().ends_with("; Secure"));
        assert!(
            secure
                .clear_cookie()
                .to_str()
                .unwrap()
                .ends_with("; Secure; Max-Age=0")
        );
        assert_eq!(format!("{id:?}"), "SessionId(redacted)");
    }

    #[test]
    fn lookup_takes_only_live_tokens() {
        let sessions = Sessions::new(SessionLimits::default(), false);
        let (id, session) = sessions.create(Some(alice()), 100);
        let good = format!("other=1; portal_session={}", id.as_str());
        assert!(sessions.lookup(&with_cookie(&good), 101).is_some());
        // Forged, truncated, padded or stuffed values are not sessions.
        for bad in [
            "portal_session=".to_owned(),
            format!("portal_session={}x", id.as_str()),
            format!("portal_session={}", &id.as_str()[1..]),
            format!("portal_session={}", "A".repeat(43)),
            format!("PORTAL_SESSION={}", id.as_str()),
            format!("portal_session={}", "\u{e9}".repeat(43)),
        ] {
            if let Ok(value) = HeaderValue::from_str(&bad) {
                let mut headers = HeaderMap::new();
                headers.insert(header::COOKIE, value);
                assert!(sessions.lookup(&headers, 101).is_none(), "{bad}");
            }
        }
        // A stale cookie first, then the live one: the live one is found.
        let two = format!(
            "portal_session={}; portal_session={}",
            "B".repeat(43),
            id.as_str()
        );
        assert!(sessions.lookup(&with_cookie(&two), 102).is_some());
        assert!(session.csrf_matches(session.csrf()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf()[1..]));
    }

    #[test]
    fn sessions_expire_and_rotate() {
        let limits = SessionLimits {
            idle_secs: 10,
            max_age_secs: 100,
            max_sessions: 3,
        };
        let sessions = Sessions::new(limits, false);
        let (id, before) = sessions.create(Some(alice()), 0);
        let cookie = with_cookie(&format!("portal_session={}", id.as_str()));
        for now in (5..95).step_by(5) {
            assert!(sessions.lookup(&cookie, now).is_some(), "used at {now}");
        }
        assert!(sessions.lookup(&cookie, 100).is_none(), "too old");
        let (id, _) = sessions.create(Some(alice()), 200);
        let cookie = with_cookie(&format!("portal_session={}", id.as_str()));
        assert!(sessions.lookup(&cookie, 210).is_none(), "idle");

        let (id, _) = sessions.create(Some(alice()), 300);
        assert!(sessions.rotate(&id, 301, |_| false).is_none(), "refused");
        let new_id = sessions
            .rotate(&id, 301, |session| {
                session.flash = Some("x".into());
                true
            })
            .unwrap();
        assert_ne!(new_id, id);
        let old = with_cookie(&format!("portal_session={}", id.as_str()));
        assert!(sessions.lookup(&old, 302).is_none(), "the old id is gone");
        let new = with_cookie(&format!("portal_session={}", new_id.as_str()));
        let (_, after) = sessions.lookup(&new, 302).unwrap();
        assert_ne!(after.csrf(), before.csrf());
        assert_eq!(after.flash.as_deref(), Some("x"));
    }

    #[test]
    fn a_full_store_drops_anonymous_sessions_first() {
        let limits = SessionLimits {
            max_sessions: 2,
            ..SessionLimits::default()
        };
        let sessions = Sessions::new(limits, false);
        let (signed_in, _) = sessions.create(Some(alice()), 0);
        for now in 1..50 {
            let _ = sessions.create(None, now);
            assert!(sessions.len() <= 2);
        }
        let cookie = with_cookie(&format!("portal_session={}", signed_in.as_str()));
        assert!(sessions.lookup(&cookie, 50).is_some());
    }

    #[test]
    fn a_full_store_lets_the_least_recently_used_go_with_one_look() {
        let limits = SessionLimits {
            max_sessions: 1_000,
            ..SessionLimits::default()
        };
        let sessions = Sessions::new(limits, false);
        let ids: Vec<SessionId> = (0..1_000)
            .map(|n| sessions.create(Some(alice()), n).0)
            .collect();
        // The oldest, used again, is now the most recent: the second oldest goes first.
        let first = with_cookie(&format!("portal_session={}", ids[0].as_str()));
        assert!(sessions.lookup(&first, 1_000).is_some());
        sessions.lock().examined = 0;
        for now in 1_001..1_011 {
            let _ = sessions.create(Some(alice()), now);
        }
        assert_eq!(sessions.len(), 1_000);
        // Ten creations in a full store of 1,000: ten sessions looked at, not ten thousand.
        assert_eq!(sessions.lock().examined, 10);
        assert!(sessions.lookup(&first, 1_011).is_some());
        for (n, id) in ids.iter().enumerate().skip(1).take(12) {
            let cookie = with_cookie(&format!("portal_session={}", id.as_str()));
            assert_eq!(sessions.lookup(&cookie, 1_011).is_some(), n > 10, "{n}");
        }
        // The order follows every change: a sweep, a removal, a rotation and an update that signs
        // a session out.
        let table = sessions.lock();
        assert_eq!(table.order.len(), table.map.len());
        drop(table);
        let (anonymous, _) = sessions.create(None, 1_012);
        let new_id = sessions.rotate(&ids[500], 1_012, |_| true).unwrap();
        sessions.update(&new_id, |session| session.user = None);
        sessions.remove(&ids[600]);
        sessions.sweep(1_011 + limits.idle_secs);
        let table = sessions.lock();
        assert_eq!(table.order.len(), table.map.len());
        assert!(
            table.order.values().all(|id| table.map.contains_key(id)),
            "every id in the order is stored"
        );
        let first_two: Vec<&SessionId> = table.order.values().take(2).collect();
        assert!(first_two.contains(&&anonymous) && first_two.contains(&&new_id));
    }
}
