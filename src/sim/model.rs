//! The reference model: what every answer of the store may be, from the
//! operations submitted and what became of them (docs/DURABILITY.md is its
//! specification).
//!
//! Per key, the operations in submission order (the committer keeps that
//! order per key) and a *floor*: the newest operation known to be applied,
//! because it was acknowledged (D1) or because a read saw it (D4: once
//! observed it never flips). The value under a key is then the floor's, or
//! that of any later operation that is not known to have failed for good.
//! A read that answers anything else (an older value, a deleted key come
//! back, bytes never put) breaks the promise. Values are kept as their id,
//! length and checksum, never their bytes.

use std::collections::BTreeMap;

/// A value as the model keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Value {
    pub id: u64,
    pub len: u32,
    pub crc: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Submitted, not answered (or its answer was lost with a crash).
    Pending,
    Acked,
    /// Answered with an error: it may still land, whole (a crash between
    /// its append and its answer), and then stays.
    Failed,
}

#[derive(Clone, Debug)]
struct Op {
    /// `None` for a delete.
    value: Option<Value>,
    state: State,
}

#[derive(Clone, Debug)]
struct History {
    ops: Vec<Op>,
    floor: usize,
}

impl History {
    fn new() -> History {
        // The key starts absent, as if deleted and acknowledged.
        History {
            ops: vec![Op {
                value: None,
                state: State::Acked,
            }],
            floor: 0,
        }
    }

    fn candidates(&self) -> &[Op] {
        &self.ops[self.floor..]
    }
}

/// Where an operation is in the model.
#[derive(Clone, Debug)]
pub(crate) struct OpRef {
    pub key: Vec<u8>,
    index: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    keys: BTreeMap<Vec<u8>, History>,
}

fn show(value: Option<Value>) -> String {
    match value {
        Some(v) => format!("value #{} ({} B, crc {:08x})", v.id, v.len, v.crc),
        None => "no value".into(),
    }
}

impl Model {
    /// A put (`Some`) or delete (`None`) was submitted.
    pub fn submit(&mut self, key: &[u8], value: Option<Value>) -> OpRef {
        let history = self.keys.entry(key.to_vec()).or_insert_with(History::new);
        history.ops.push(Op {
            value,
            state: State::Pending,
        });
        OpRef {
            key: key.to_vec(),
            index: history.ops.len() - 1,
        }
    }

    pub fn acked(&mut self, op: &OpRef) {
        if let Some(history) = self.keys.get_mut(&op.key) {
            history.ops[op.index].state = State::Acked;
            history.floor = history.floor.max(op.index);
        }
    }

    pub fn failed(&mut self, op: &OpRef) {
        if let Some(history) = self.keys.get_mut(&op.key)
            && history.ops[op.index].state == State::Pending
        {
            history.ops[op.index].state = State::Failed;
        }
    }

    /// A read of `key` answered `got` (length and checksum of the bytes,
    /// or none). Moves the floor to what was seen.
    ///
    /// # Errors
    /// What the answer breaks.
    pub fn observe(&mut self, key: &[u8], got: Option<(u32, u32)>) -> Result<(), String> {
        let history = self.keys.entry(key.to_vec()).or_insert_with(History::new);
        let matches = |op: &Op| match (op.value, got) {
            (None, None) => true,
            (Some(v), Some((len, crc))) => v.len == len && v.crc == crc,
            _ => false,
        };
        match history.candidates().iter().position(matches) {
            Some(offset) => {
                history.floor += offset;
                Ok(())
            }
            None => {
                let expected: Vec<String> = history
                    .candidates()
                    .iter()
                    .map(|op| format!("{} [{:?}]", show(op.value), op.state))
                    .collect();
                let older = history.ops[..history.floor].iter().any(matches);
                Err(format!(
                    "get({}) answered {}{}; the model allows only: {}",
                    String::from_utf8_lossy(key),
                    match got {
                        Some((len, crc)) => format!("{len} B with crc {crc:08x}"),
                        None => "no value".into(),
                    },
                    if older {
                        " (an older state: a lost acknowledged write or a deleted key come back)"
                    } else {
                        " (never put under this key)"
                    },
                    expected.join(", ")
                ))
            }
        }
    }

    /// Whether the key may have a value, and whether it may have none.
    pub fn may_be(&self, key: &[u8]) -> (bool, bool) {
        match self.keys.get(key) {
            None => (false, true),
            Some(history) => (
                history.candidates().iter().any(|op| op.value.is_some()),
                history.candidates().iter().any(|op| op.value.is_none()),
            ),
        }
    }

    /// Whether the key may have a value of `len` bytes.
    pub fn may_have_len(&self, key: &[u8], len: u64) -> bool {
        self.keys.get(key).is_some_and(|history| {
            history
                .candidates()
                .iter()
                .any(|op| op.value.is_some_and(|v| u64::from(v.len) == len))
        })
    }

    /// Every key the model knows, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.keys.keys()
    }
}
