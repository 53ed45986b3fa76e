//! Evaluation of the `<condition>` elements of the kernel's XML against a configuration:
//! `<config var="CONFIG_X"/>`, `<not>`, `<and>`, `<or>`.

use roxmltree::Node;

use crate::config::KernelConfig;

/// Evaluates a `<condition>` element (or any of its operator children).
pub fn eval_condition(node: Node<'_, '_>, config: &KernelConfig) -> Result<bool, String> {
    let elems: Vec<Node<'_, '_>> = node.children().filter(|c| c.is_element()).collect();
    match node.tag_name().name() {
        "condition" => match elems.as_slice() {
            [] => Ok(true),
            [one] => eval_condition(*one, config),
            _ => Err("<condition> with more than one operand".into()),
        },
        "config" => {
            let var = node.attribute("var").ok_or("<config> without var")?;
            let option =
                var.strip_prefix("CONFIG_").ok_or_else(|| format!("config var {var} lacks the CONFIG_ prefix"))?;
            Ok(config.flag(option))
        }
        "not" => match elems.as_slice() {
            [one] => Ok(!eval_condition(*one, config)?),
            _ => Err("<not> needs exactly one operand".into()),
        },
        "and" => {
            for e in elems {
                if !eval_condition(e, config)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        "or" => {
            for e in elems {
                if eval_condition(e, config)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        other => Err(format!("unknown condition operator <{other}>")),
    }
}
