//! The conventions of the flat buffers that cross the component boundary: items laid
//! end to end in one byte list, cut at their `ends` or `lengths`, and the few items
//! without a value (no event time, no state) marked by a sorted list of their indices,
//! instead of a list of options that wasmtime would lower one element at a time.

/// The `i`th piece of `data` cut at `ends`, if the ends allow it.
pub(super) fn cut<'a>(data: &'a [u8], ends: &[u32], i: usize) -> Option<&'a [u8]> {
    let start = match i {
        0 => 0,
        _ => *ends.get(i - 1)? as usize,
    };
    data.get(start..*ends.get(i)? as usize)
}

/// Checks that `lengths` add up to the bytes of `data`.
pub(super) fn check_lengths(lengths: &[u32], data: &[u8]) -> Result<(), String> {
    let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
    if total != data.len() as u64 {
        return Err(format!(
            "the lengths add up to {total} bytes, the data has {}",
            data.len()
        ));
    }
    Ok(())
}

/// Checks that `marks` (called `what`) are indices of `count` items, in increasing order.
pub(super) fn check_marks(what: &str, marks: &[u32], count: usize) -> Result<(), String> {
    let mut previous = None;
    for &mark in marks {
        if mark as usize >= count || previous.is_some_and(|p| mark <= p) {
            return Err(format!(
                "`{what}` must list indices below {count} in increasing order, it has {mark} \
                 after {}",
                previous.map_or("nothing".into(), |p: u32| p.to_string())
            ));
        }
        previous = Some(mark);
    }
    Ok(())
}

/// For each of `count` items in order, whether the (checked) `marks` list it.
pub(super) fn marked(marks: &[u32], count: usize) -> impl Iterator<Item = bool> + '_ {
    let mut next = marks.iter().peekable();
    (0..count).map(move |i| next.next_if(|&&m| m as usize == i).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_say_which_items_they_list() {
        let marks = [1, 3];
        assert_eq!(check_marks("nones", &marks, 4), Ok(()));
        let listed: Vec<bool> = marked(&marks, 5).collect();
        assert_eq!(listed, [false, true, false, true, false]);
    }

    #[test]
    fn marks_out_of_range_or_order_are_refused() {
        assert_eq!(
            check_marks("untimed", &[0, 4], 4).unwrap_err(),
            "`untimed` must list indices below 4 in increasing order, it has 4 after 0"
        );
        assert!(check_marks("untimed", &[2, 2], 4).is_err());
        assert!(check_marks("untimed", &[3, 1], 4).is_err());
        assert!(check_marks("untimed", &[], 0).is_ok());
    }

    #[test]
    fn lengths_must_cover_the_data() {
        assert_eq!(check_lengths(&[2, 0, 1], b"abc"), Ok(()));
        assert_eq!(
            check_lengths(&[2], b"abc").unwrap_err(),
            "the lengths add up to 2 bytes, the data has 3"
        );
    }
}
