//! IVR menus: a prompt, key choices leading to routes, and what happens on silence or a
//! wrong key. [`MenuRun`] is the sans-IO state of one caller in one menu; the call task
//! plays what it asks and feeds it keys and timeouts.

use std::collections::HashMap;
use std::time::Duration;

use hotline_media::Prompt;

use crate::Route;

/// A configured menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub name: String,
    /// Played on entry and on every retry.
    pub prompt: Prompt,
    /// Key → where it leads.
    pub choices: HashMap<char, Route>,
    /// Silence after the prompt ends before it counts as no choice.
    pub timeout: Duration,
    /// Further tries after the first (no key, or a wrong one) before `default`.
    pub retries: u32,
    /// Played before the retry after a wrong key.
    pub invalid: Option<Prompt>,
    /// Where the caller goes when the tries run out.
    pub default: Route,
}

/// What the call task must do next for a caller in a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuStep {
    /// Play these prompts (replacing what plays), then wait `menu.timeout` for a key.
    Play(Vec<Prompt>),
    /// Leave the menu for this route.
    Go(Route),
}

/// One caller's progress through a menu.
#[derive(Debug, Clone, Default)]
pub struct MenuRun {
    tries: u32,
}

impl MenuRun {
    /// Entering the menu: play its prompt.
    pub fn start(menu: &Menu) -> (MenuRun, MenuStep) {
        (
            MenuRun { tries: 0 },
            MenuStep::Play(vec![menu.prompt.clone()]),
        )
    }

    /// A key (accepted while the prompt plays too: callers who know the menu barge in).
    pub fn key(&mut self, menu: &Menu, key: char) -> MenuStep {
        match menu.choices.get(&key.to_ascii_uppercase()) {
            Some(r) => MenuStep::Go(r.clone()),
            None => self.retry(menu, menu.invalid.clone()),
        }
    }

    /// No key within the timeout after the prompt.
    pub fn timeout(&mut self, menu: &Menu) -> MenuStep {
        self.retry(menu, None)
    }

    fn retry(&mut self, menu: &Menu, first: Option<Prompt>) -> MenuStep {
        self.tries += 1;
        if self.tries > menu.retries {
            return MenuStep::Go(menu.default.clone());
        }
        MenuStep::Play(first.into_iter().chain([menu.prompt.clone()]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        Menu {
            name: "main".into(),
            prompt: Prompt::from_samples(vec![1; 8]),
            choices: [
                ('1', Route::Queue("sales".into())),
                ('2', Route::Menu("more".into())),
            ]
            .into_iter()
            .collect(),
            timeout: Duration::from_secs(5),
            retries: 1,
            invalid: Some(Prompt::from_samples(vec![2; 8])),
            default: Route::Queue("support".into()),
        }
    }

    #[test]
    fn a_choice_leads_to_its_route() {
        let m = menu();
        let (mut run, step) = MenuRun::start(&m);
        assert_eq!(step, MenuStep::Play(vec![m.prompt.clone()]));
        assert_eq!(run.key(&m, '2'), MenuStep::Go(Route::Menu("more".into())));
    }

    #[test]
    fn wrong_key_replays_with_the_invalid_prompt_then_default() {
        let m = menu();
        let (mut run, _) = MenuRun::start(&m);
        assert_eq!(
            run.key(&m, '7'),
            MenuStep::Play(vec![m.invalid.clone().unwrap(), m.prompt.clone()])
        );
        assert_eq!(run.key(&m, '#'), MenuStep::Go(m.default.clone()));
    }

    #[test]
    fn silence_retries_then_default() {
        let m = menu();
        let (mut run, _) = MenuRun::start(&m);
        assert_eq!(run.timeout(&m), MenuStep::Play(vec![m.prompt.clone()]));
        assert_eq!(run.key(&m, '1'), MenuStep::Go(Route::Queue("sales".into())));
        let (mut run, _) = MenuRun::start(&m);
        run.timeout(&m);
        assert_eq!(run.timeout(&m), MenuStep::Go(m.default.clone()));
    }
}
