//! What families share without knowing each other: one value per type, made by
//! whichever family asks first (px and sql reach the ssh crate's connections this
//! way, and `%ssh_tunnel` sees the same ones).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One value of each type, shared by every family of one kernel.
#[derive(Default)]
pub struct Shared {
    values: RefCell<HashMap<TypeId, Rc<dyn Any>>>,
}

impl Shared {
    /// The shared value of type `T`, made with `make` the first time.
    pub fn get_or_init<T: 'static>(&self, make: impl FnOnce() -> T) -> Rc<T> {
        if let Some(v) = self.values.borrow().get(&TypeId::of::<T>())
            && let Ok(v) = v.clone().downcast::<T>()
        {
            return v;
        }
        let v = Rc::new(make());
        self.values
            .borrow_mut()
            .insert(TypeId::of::<T>(), v.clone() as Rc<dyn Any>);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        let shared = Shared::default();
        let a = shared.get_or_init(|| 1u32);
        let b = shared.get_or_init(|| 2u32);
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(*b, 1);
        assert_eq!(*shared.get_or_init(|| String::from("s")), "s");
    }
}
