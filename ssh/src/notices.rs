//! What the ssh crate has to tell the user at the next cell: the latest word per
//! connection (a drop, then its return, is said once, as one line).

use std::cell::RefCell;
use std::rc::Rc;

/// Notices waiting for the next cell, one per key.
#[derive(Clone, Default)]
pub struct Notices(Rc<RefCell<Vec<(String, String)>>>);

impl Notices {
    /// Say `text` about `key`, replacing what was waiting about it.
    pub fn put(&self, key: String, text: String) {
        let mut all = self.0.borrow_mut();
        all.retain(|(k, _)| *k != key);
        all.push((key, text));
    }

    /// Everything waiting, once.
    pub fn take(&self) -> Vec<String> {
        self.0.borrow_mut().drain(..).map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_word_per_key_once() {
        let n = Notices::default();
        n.put("a".into(), "a dropped".into());
        n.put("b".into(), "b dropped".into());
        n.put("a".into(), "a came back".into());
        assert_eq!(n.take(), vec!["b dropped", "a came back"]);
        assert!(n.take().is_empty());
    }
}
