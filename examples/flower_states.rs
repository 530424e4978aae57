//! # flower_states — gevent_async's flower as a Tulipa state machine
//!
//! ```text
//! cargo run --release --example flower_states
//! ```
//!
//! ```text
//! sprouting ──▶ growing ──▶ flowering ──▶ withering ──▶ dead
//!                               └──────── (eaten) ────────▲
//! ```
//!
//! Each state is declared with the states it may go to. Entering a state runs its body as a task
//! that *replaces* the previous state's task, like gevent_async's greenlets: a state body that
//! calls [`StateMachine::goto`] as its last action simply ends, and the next state takes over.
//! Arguments travel with the transition (`dead(is_eaten=True)` in the seed).
//!
//! The program grows two flowers, one after the other: one is eaten while flowering, the other
//! withers. It also shows:
//!
//! - an `on_start` callback, told of every state with its arguments before the state runs (the
//!   seed's `Object.state` example: it stores the current state's name in the object);
//! - a transition that was not declared (`growing` tries `dead`): refused with
//!   [`Error::Validation`], and the flower keeps growing;
//! - [`StateMachine::wait_terminal`], which waits for the terminal state (`dead`) to finish.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::rt::EventLoop;
use tulipa_futures::state_machine::StateMachine;
use tulipa_futures::{run, sleep, Error, Result};

/// The arguments a state is entered with.
#[derive(Clone, Copy, Debug, Default)]
struct Args {
    /// `dead(is_eaten=True)`: the flower was eaten, there is nothing to clean up.
    is_eaten: bool,
}

/// A flower: its name, whether it will be eaten, and the state it stores (`Object.state`).
struct Flower {
    name: &'static str,
    will_be_eaten: bool,
    state: RefCell<Option<String>>,
}

/// Builds the seed's flower. Each body does its work (a short sleep), then moves on.
fn build(lp: &EventLoop, flower: &Rc<Flower>) -> StateMachine<Args> {
    let f = flower.clone();
    let name = flower.name;
    let eaten = flower.will_be_eaten;
    StateMachine::<Args>::builder(lp)
        .state("sprouting", &["growing"], move |sm, _| async move {
            println!("{name}: germinating");
            sleep(Duration::from_millis(10)).await?;
            sm.goto("growing", Args::default()) // the sprouting task ends, growing takes over
        })
        .state("growing", &["flowering"], move |sm, _| async move {
            println!("{name}: turning CO2 and sunlight into biomass");
            // `growing` declares only `flowering`: any other transition is refused, and the
            // flower stays in this state.
            match sm.goto("dead", Args::default()) {
                Err(e @ Error::Validation(_)) => println!("{name}: refused: {e}"),
                other => println!("{name}: unexpected: {other:?}"),
            }
            println!("{name}: still {}", sm.current().unwrap_or("?"));
            sleep(Duration::from_millis(10)).await?;
            sm.goto("flowering", Args::default())
        })
        .state(
            "flowering",
            &["dead", "withering"],
            move |sm, _| async move {
                println!("{name}: growing flowers");
                sleep(Duration::from_millis(10)).await?;
                if eaten {
                    // Parameters can be given to state changes.
                    sm.goto("dead", Args { is_eaten: true })
                } else {
                    sm.goto("withering", Args::default())
                }
            },
        )
        .state("withering", &["dead"], move |sm, _| async move {
            println!("{name}: drying up");
            sleep(Duration::from_millis(10)).await?;
            sm.goto("dead", Args::default())
        })
        // A terminal state: no transitions.
        .state("dead", &[], move |_, args: Args| async move {
            if args.is_eaten {
                println!("{name}: eaten, nothing left to clean up");
            } else {
                println!("{name}: cleaning up");
            }
            Ok(())
        })
        // Called for every state, before its body runs: store it in the flower.
        .on_start(move |state, args: &Args| {
            println!("{name}: -> {state} (is_eaten={})", args.is_eaten);
            *f.state.borrow_mut() = Some(state.to_string());
        })
        .build()
}

/// Grows one flower to its end and reports its history.
async fn grow(lp: &EventLoop, name: &'static str, will_be_eaten: bool) -> Result<()> {
    let flower = Rc::new(Flower {
        name,
        will_be_eaten,
        state: RefCell::new(None),
    });
    let sm = build(lp, &flower);
    sm.start("sprouting", Args::default())?; // sprouting()  # spawns the initial state
    sm.wait_terminal().await?;
    println!(
        "{name}: history {} (stored state: {})",
        sm.history().join(" -> "),
        flower.state.borrow().as_deref().unwrap_or("none")
    );
    Ok(())
}

async fn main_task() -> Result<()> {
    let lp = EventLoop::running()?;
    grow(&lp, "rose", true).await?;
    grow(&lp, "tulip", false).await?;
    Ok(())
}

fn main() -> ExitCode {
    match run(main_task()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flower_states: {error}");
            ExitCode::FAILURE
        }
    }
}
