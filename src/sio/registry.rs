//! Namespaces and their handlers, built once before the server starts and then frozen:
//! shared by every worker through an `Arc`, read without any lock. Handlers belong to
//! the namespace, not to the socket, so an idle socket pays nothing per event.

use std::any::Any;
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::cx::{Cx, Event};

/// What middleware sees of a CONNECT.
pub struct Handshake<'a> {
    pub namespace: &'a str,
    /// The CONNECT's auth object, raw JSON (`None` when the client sent none).
    pub auth: Option<&'a RawValue>,
}

impl Handshake<'_> {
    /// A string field of the auth object.
    pub fn auth_str(&self, key: &str) -> Option<String> {
        let auth = self.auth?;
        let map: HashMap<String, serde_json::Value> = serde_json::from_str(auth.get()).ok()?;
        map.get(key)?.as_str().map(str::to_string)
    }
}

/// A refused CONNECT: the client's `connect_error` gets `message` and `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    pub message: String,
    /// Raw JSON, omitted when `None`.
    pub data: Option<String>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Attaches `data` (any JSON value, given as its text).
    pub fn with_data(mut self, json: impl Into<String>) -> ConnectError {
        self.data = Some(json.into());
        self
    }
}

pub type Middleware = Box<dyn Fn(&Handshake<'_>) -> Result<(), ConnectError> + Send + Sync>;
pub type EventHandler = Box<dyn Fn(&mut Cx<'_, '_>, &Event<'_>) + Send + Sync>;
pub type ConnectHandler = Box<dyn Fn(&mut Cx<'_, '_>, &Handshake<'_>) + Send + Sync>;
pub type DisconnectHandler = Box<dyn Fn(&mut Cx<'_, '_>, &str) + Send + Sync>;
/// Makes a socket's state when it connects.
pub type StateFactory = fn() -> Box<dyn Any + Send>;

/// One namespace: its middleware, in order, and its handlers.
pub struct Namespace {
    pub(crate) name: String,
    middleware: Vec<Middleware>,
    handlers: HashMap<String, EventHandler>,
    pub(crate) on_connect: Option<ConnectHandler>,
    pub(crate) on_disconnect: Option<DisconnectHandler>,
    pub(crate) state: Option<StateFactory>,
}

impl Namespace {
    pub fn new(name: impl Into<String>) -> Namespace {
        Namespace {
            name: name.into(),
            middleware: Vec::new(),
            handlers: HashMap::new(),
            on_connect: None,
            on_disconnect: None,
            state: None,
        }
    }

    /// Gives each socket of this namespace a state `S` (`Default` at CONNECT), reached
    /// with `Cx::state::<S>()`. A zero-sized `S` costs no allocation.
    pub fn state<S: Default + Send + 'static>(mut self) -> Namespace {
        self.state = Some(|| Box::new(S::default()));
        self
    }

    /// Runs once a CONNECT is accepted (after the middleware), before any event.
    pub fn on_connect(
        mut self,
        f: impl Fn(&mut Cx<'_, '_>, &Handshake<'_>) + Send + Sync + 'static,
    ) -> Namespace {
        self.on_connect = Some(Box::new(f));
        self
    }

    /// Runs when a socket leaves, with Node's reason: `client namespace disconnect`,
    /// `server namespace disconnect`, `transport close`, `transport error`,
    /// `ping timeout`, `parse error`, `forced close`, `server shutting down`. The socket
    /// is still in its rooms; what is emitted to it is dropped.
    pub fn on_disconnect(
        mut self,
        f: impl Fn(&mut Cx<'_, '_>, &str) + Send + Sync + 'static,
    ) -> Namespace {
        self.on_disconnect = Some(Box::new(f));
        self
    }

    /// Runs on every CONNECT to this namespace; an `Err` refuses it.
    pub fn middleware(
        mut self,
        f: impl Fn(&Handshake<'_>) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> Namespace {
        self.middleware.push(Box::new(f));
        self
    }

    /// Handles `event`; events without a handler are ignored.
    pub fn on(
        mut self,
        event: impl Into<String>,
        f: impl Fn(&mut Cx<'_, '_>, &Event<'_>) + Send + Sync + 'static,
    ) -> Namespace {
        self.handlers.insert(event.into(), Box::new(f));
        self
    }

    pub(crate) fn admit(&self, hs: &Handshake<'_>) -> Result<(), ConnectError> {
        self.middleware.iter().try_for_each(|m| m(hs))
    }

    pub(crate) fn handler(&self, event: &str) -> Option<&EventHandler> {
        self.handlers.get(event)
    }
}

/// Every namespace of a server. No implicit `/`: only those registered exist.
#[derive(Default)]
pub struct Registry {
    namespaces: Vec<Namespace>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn ns(mut self, ns: Namespace) -> Registry {
        self.namespaces.push(ns);
        self
    }

    /// The namespace named `name`, with its index.
    pub(crate) fn find(&self, name: &str) -> Option<(usize, &Namespace)> {
        self.namespaces
            .iter()
            .enumerate()
            .find(|(_, n)| n.name == name)
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Namespace> {
        self.namespaces.get(index)
    }
}
