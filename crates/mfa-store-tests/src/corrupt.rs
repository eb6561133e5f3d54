//! The store that hands back bytes this version cannot read ([`Garbled`]): the service must call
//! them corruption (naming whose record), change nothing and pass no one.

use std::sync::Mutex;

use mfa_core::{
    CustomerId, OrgId,
    store::{Encoded, Versioned},
};

use crate::hooks::{Hooked, Hooks};

/// A store that hands back other bytes in place of those stored for one customer or one
/// organisation, with the real version: what a damaged row (or one a newer version wrote) looks
/// like to the service. Writes go to the store underneath unchanged.
pub type Garbled<S> = Hooked<S, Garbage>;

/// Whose bytes read as what ([`Garbled`]).
#[derive(Default)]
pub struct Garbage(Mutex<Option<Garbling>>);

/// The organisation, the customer (`None` for the policy), and the bytes they read as.
type Garbling = (OrgId, Option<CustomerId>, Vec<u8>);

impl<S> Hooked<S, Garbage> {
    /// `store`, handing back what it stores until [`Hooked::garble`] says otherwise.
    pub fn garbled(store: S) -> Self {
        Self {
            store,
            hooks: Garbage::default(),
        }
    }

    /// From now on the record of `customer` (or, for `None`, the policy of `org`) reads as
    /// `bytes`; `None` puts everything right again.
    pub fn garble(&self, target: Option<(OrgId, Option<CustomerId>)>, bytes: &[u8]) {
        *self.hooks.0.lock().expect("not poisoned") =
            target.map(|(org, customer)| (org, customer, bytes.to_vec()));
    }
}

impl Hooks for Garbage {
    fn loaded<T>(
        &self,
        org: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        let garbage = self.0.lock().expect("not poisoned");
        match (&*garbage, loaded) {
            (Some((o, c, bytes)), Some(loaded)) if o == org && c.as_ref() == customer => {
                Some(Versioned {
                    value: Encoded::new(bytes.clone()),
                    version: loaded.version,
                })
            }
            (_, loaded) => loaded,
        }
    }
}
