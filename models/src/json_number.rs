//! Floats as JSON numbers in their shortest form. `serde_json` keeps every number of a `Value` as an `f64`, so
//! an `f32` put into one as is prints with an `f64`'s digits (`0.1f32` as `0.10000000149011612`): twice the
//! bytes of the float's own shortest form, on every vector a route answers with. The `f64` nearest to the
//! `f32`'s shortest decimal prints as that decimal and reads back as the same `f32`.

use std::io::Write;

use serde_json::{Number, Value};

/// `x` as the JSON number of its shortest round-trip decimal; `null` for NaN and infinities, as `serde_json`.
pub fn f32_number(x: f32) -> Value {
    // `{:?}` writes the shortest decimal that reads back as `x` (with an exponent for very large or small
    // values): at most 15 bytes for a finite f32.
    let mut buf = [0u8; 32];
    let mut rest = &mut buf[..];
    let widened = match write!(rest, "{x:?}") {
        Ok(()) => {
            let len = 32 - rest.len();
            std::str::from_utf8(&buf[..len]).ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::from(x))
        }
        Err(_) => f64::from(x),
    };
    Number::from_f64(widened).map_or(Value::Null, Value::Number)
}

/// Each of `xs` as by [`f32_number`], in a JSON array.
pub fn f32_numbers(xs: &[f32]) -> Value {
    Value::Array(xs.iter().map(|&x| f32_number(x)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_short_and_read_back_exactly() {
        let cases = [0.1f32, -0.034477245, 1.0, 0.0, -0.0, 3.4028235e38, 1e-45, f32::MIN_POSITIVE, 123456.79, 7e-7];
        for x in cases {
            let text = f32_number(x).to_string();
            assert_eq!(text.parse::<f64>().unwrap() as f32, x, "{x:?} printed as {text}");
            assert!(text.len() <= format!("{x:?}").len() + 2, "{x:?} printed as {text}");
        }
        assert_eq!(f32_number(0.1).to_string(), "0.1");
        assert_eq!(f32_numbers(&[0.5, -0.034477245]).to_string(), "[0.5,-0.034477245]");
        assert_eq!(f32_numbers(&[f32::NAN, f32::INFINITY]).to_string(), "[null,null]");
        // Every f32 bit pattern in a sweep survives the trip.
        for bits in (0..u32::MAX).step_by(65_521) {
            let x = f32::from_bits(bits);
            if x.is_finite() {
                let back = f32_number(x).as_f64().unwrap() as f32;
                assert_eq!(back.to_bits(), x.to_bits(), "{x:?}");
            }
        }
    }
}
