//! Namespaces and their handlers, built once before the server starts and then frozen:
//! shared by every worker through an `Arc`, read without any lock. Handlers belong to
//! the namespace, not to the socket, so an idle socket pays nothing per event.

use std::any::Any;
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::cx::{Cx, Event};
use super::io::{Io, PendingConnect};
use super::query::ServerAck;

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
/// Middleware that answers later: it gets the CONNECT and a `PendingConnect` to
/// `allow` or `refuse` from any thread.
pub type DeferredMiddleware = Box<dyn Fn(&Handshake<'_>, PendingConnect) + Send + Sync>;
/// Handles an event another server sent with `serverSideEmit` (on the bridge's
/// thread): the `Io` handle, the namespace's name, the arguments after the event name.
pub type ServerEventHandler = Box<dyn Fn(&Io, &str, &[&RawValue], ServerAck) + Send + Sync>;
/// Which names a dynamic namespace takes.
pub type NamespaceMatcher = Box<dyn Fn(&str) -> bool + Send + Sync>;
pub type EventHandler = Box<dyn Fn(&mut Cx<'_, '_>, &Event<'_>) + Send + Sync>;
pub type ConnectHandler = Box<dyn Fn(&mut Cx<'_, '_>, &Handshake<'_>) + Send + Sync>;
pub type DisconnectHandler = Box<dyn Fn(&mut Cx<'_, '_>, &str) + Send + Sync>;
/// Makes a socket's state when it connects.
pub type StateFactory = fn() -> Box<dyn Any + Send>;
/// A socket's state as Node's `socket.data` (for `fetchSockets`).
pub type DataOf = fn(&(dyn Any + Send)) -> Option<serde_json::Value>;

/// One namespace: its middleware, in order, and its handlers.
pub struct Namespace {
    pub(crate) name: String,
    middleware: Vec<Middleware>,
    pub(crate) deferred: Option<DeferredMiddleware>,
    /// Set for a dynamic namespace: the names it serves.
    matcher: Option<NamespaceMatcher>,
    handlers: HashMap<String, EventHandler>,
    server_events: HashMap<String, ServerEventHandler>,
    pub(crate) on_connect: Option<ConnectHandler>,
    pub(crate) on_disconnect: Option<DisconnectHandler>,
    pub(crate) state: Option<StateFactory>,
    pub(crate) data: Option<DataOf>,
}

impl Namespace {
    pub fn new(name: impl Into<String>) -> Namespace {
        Namespace {
            name: name.into(),
            middleware: Vec::new(),
            deferred: None,
            matcher: None,
            handlers: HashMap::new(),
            server_events: HashMap::new(),
            on_connect: None,
            on_disconnect: None,
            state: None,
            data: None,
        }
    }

    /// Gives each socket of this namespace a state `S` (`Default` at CONNECT), reached
    /// with `Cx::state::<S>()`. A zero-sized `S` costs no allocation.
    pub fn state<S: Default + Send + 'static>(mut self) -> Namespace {
        self.state = Some(|| Box::new(S::default()));
        self
    }

    /// `state::<S>()`, and the state is the socket's `data` for other servers'
    /// `fetchSockets` (Node's `socket.data`) and `Io`'s `fetch_sockets`.
    pub fn state_as_data<S: Default + serde::Serialize + Send + 'static>(mut self) -> Namespace {
        self.state = Some(|| Box::new(S::default()));
        self.data = Some(|state| serde_json::to_value(state.downcast_ref::<S>()?).ok());
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

    /// Middleware that answers later (a database, another service): runs after the
    /// others accepted, and the CONNECT waits until `PendingConnect::allow` or
    /// `refuse` is called, from any thread, within `connect_timeout`.
    pub fn middleware_deferred(
        mut self,
        f: impl Fn(&Handshake<'_>, PendingConnect) + Send + Sync + 'static,
    ) -> Namespace {
        self.deferred = Some(Box::new(f));
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

    /// Handles `event` sent by another server or an emitter with `serverSideEmit`.
    /// It runs on the Redis bridge's thread, with an `Io` to reach sockets. A sender
    /// that asked for an ack gets none from this handler (use `on_server_event_ack`).
    pub fn on_server_event(
        self,
        event: impl Into<String>,
        f: impl Fn(&Io, &str, &[&RawValue]) + Send + Sync + 'static,
    ) -> Namespace {
        self.on_server_event_ack(event, move |io, namespace, args, _| f(io, namespace, args))
    }

    /// `on_server_event` whose handler can answer the sender's ack (`ServerAck`, a
    /// no-op when none was asked for), from any thread, once.
    pub fn on_server_event_ack(
        mut self,
        event: impl Into<String>,
        f: impl Fn(&Io, &str, &[&RawValue], ServerAck) + Send + Sync + 'static,
    ) -> Namespace {
        self.server_events.insert(event.into(), Box::new(f));
        self
    }

    pub(crate) fn admit(&self, hs: &Handshake<'_>) -> Result<(), ConnectError> {
        self.middleware.iter().try_for_each(|m| m(hs))
    }

    pub(crate) fn handler(&self, event: &str) -> Option<&EventHandler> {
        self.handlers.get(event)
    }
}

/// Longest namespace name a dynamic namespace takes.
pub const MAX_NAMESPACE_NAME: usize = 256;

/// Every namespace of a server. No implicit `/`: only those registered exist.
///
/// Dynamic namespaces (`Registry::dynamic`) cost nothing while empty: a namespace's
/// state is its sockets and their rooms (entries in each worker's room index, gone with
/// the last member), so one is made by its first CONNECT and dropped with its last
/// socket. They are bounded like any namespace: `max_namespaces` per connection, names
/// of at most `MAX_NAMESPACE_NAME` bytes.
#[derive(Default)]
pub struct Registry {
    namespaces: Vec<Namespace>,
    io: Io,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn ns(mut self, ns: Namespace) -> Registry {
        self.namespaces.push(ns);
        self
    }

    /// Serves every namespace whose name `matches` (and is no static one) with the
    /// handlers of `template` (whose own name is only a label). Handlers see the
    /// concrete name in `Cx::namespace`. Checked in the order added.
    pub fn dynamic(
        mut self,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        mut template: Namespace,
    ) -> Registry {
        template.matcher = Some(Box::new(matches));
        self.namespaces.push(template);
        self
    }

    /// A handle for other threads (emit, answer acks, answer deferred middleware); it
    /// reaches the sockets once the server runs.
    pub fn io(&self) -> Io {
        self.io.clone()
    }

    /// Runs the server-side event handler of `namespace` for `elements` (event name
    /// first, raw JSON), with the sender's `ack`. `false` if there is none.
    pub fn dispatch_server_event(
        &self,
        namespace: &str,
        elements: &[&RawValue],
        ack: ServerAck,
    ) -> bool {
        let Some((_, ns, _)) = self.find(namespace) else {
            return false;
        };
        let Some(name) = elements
            .first()
            .and_then(|e| serde_json::from_str::<String>(e.get()).ok())
        else {
            return false;
        };
        match ns.server_events.get(&name) {
            Some(handler) => {
                handler(&self.io, namespace, &elements[1..], ack);
                true
            }
            None => false,
        }
    }

    /// The names of the static namespaces (those registered with `ns`).
    pub fn static_names(&self) -> impl Iterator<Item = &str> {
        self.namespaces
            .iter()
            .filter(|n| n.matcher.is_none())
            .map(|n| n.name.as_str())
    }

    /// Whether a namespace named `name` is served (static, or taken by a matcher).
    pub fn serves(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub(crate) fn io_ref(&self) -> &Io {
        &self.io
    }

    /// The namespace serving `name`, with its index; `dynamic` when a matcher took it.
    pub(crate) fn find(&self, name: &str) -> Option<(usize, &Namespace, bool)> {
        if let Some((i, n)) = self
            .namespaces
            .iter()
            .enumerate()
            .find(|(_, n)| n.matcher.is_none() && n.name == name)
        {
            return Some((i, n, false));
        }
        if !name.starts_with('/') || name.len() > MAX_NAMESPACE_NAME {
            return None;
        }
        self.namespaces
            .iter()
            .enumerate()
            .find(|(_, n)| n.matcher.as_ref().is_some_and(|m| m(name)))
            .map(|(i, n)| (i, n, true))
    }

    /// The name of a socket's namespace: its dynamic name, else the static one.
    pub(crate) fn name_of<'r>(
        &'r self,
        index: usize,
        dyn_name: Option<&'r str>,
    ) -> Option<&'r str> {
        let ns = self.get(index)?;
        Some(dyn_name.unwrap_or(&ns.name))
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Namespace> {
        self.namespaces.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_first_then_matchers_in_order_within_bounds() {
        let registry = Registry::new()
            .ns(Namespace::new("/room-1"))
            .dynamic(|n| n.starts_with("/room-"), Namespace::new("rooms"))
            .dynamic(|_| true, Namespace::new("any"));
        assert!(matches!(registry.find("/room-1"), Some((0, _, false))));
        assert!(matches!(registry.find("/room-2"), Some((1, _, true))));
        assert!(matches!(registry.find("/x"), Some((2, _, true))));
        // Not a namespace name, or too long: no matcher is asked.
        assert!(registry.find("x").is_none());
        let long = format!("/{}", "a".repeat(MAX_NAMESPACE_NAME));
        assert!(registry.find(&long).is_none());
        assert!(Registry::new().find("/").is_none(), "no implicit /");
    }
}
