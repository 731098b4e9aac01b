package sanitize

import "strings"

// Word classes: each token of the normalised text is looked up once and gets
// a bit mask of the classes it belongs to; rules are sequences of classes.
const (
	cIgnore     uint64 = 1 << iota // ignore, forget, disregard (en, de, fr, es, it)
	cPrior                         // previous, above, before
	cAll                           // all, any, everything
	cEverything                    // everything, alles, tout
	cInstr                         // instructions, rules, guidelines (strong objects)
	cWeakObj                       // tasks, information, conversation (weak objects)
	cNow                           // now, from now on
	cNew                           // new
	cTask                          // task, tasks, assignment, role
	cReveal                        // show, print, reveal, repeat
	cSecretMod                     // your, initial, hidden, system
	cSecret                        // prompt, instructions, password
	cYou                           // you, du
	cAre                           // are, bist
	cWant                          // want, need
	cAct                           // act
	cAs                            // as
	cPretend                       // pretend, imagine
	cBe                            // be
	cNo                            // no, without, free
	cLimits                        // restrictions, filters, censorship
	cBegin                         // begin, start, prefix
	cYour                          // your
	cReply                         // reply, response, answer, output
	cWith                          // with
	cRepeat                        // repeat
	cAfter                         // after
	cMe                            // me
	cNothing                       // nothing
	cElse                          // else
	cEnd                           // end, begin (delimiters)
	cOf                            // of
	cInput                         // input, prompt, instructions (delimiter objects)
	cUser                          // user, system
	cSystem                        // system
	cPromptW                       // prompt
	cJailbreak                     // jailbreak, jailbroken, dan
	cDeveloper                     // developer
	cMode                          // mode
	cFrom                          // from
	cOn                            // on
	cStay                          // stay, break
	cCharacter                     // character, role
	cDo                            // do
	cAnything                      // anything
	cTo                            // to
	cThat                          // that
	cPassword                      // password, passcode, secret
	cStop                          // sentence punctuation (a boundary token)
	cThen                          // and, then, now: what follows an override
	cRoleNext                      // a, an, the, in, no, my: a new role follows
	cDet                           // the, your: a definite object
)

// stopToken stands for sentence punctuation in the token stream.
const stopToken = "\x01"

var lexicon = map[string]uint64{}

func addWords(class uint64, words string) {
	for _, w := range strings.Fields(words) {
		lexicon[w] |= class
	}
}

func init() {
	addWords(cIgnore, `ignore ignoring ignored disregard disregarding forget forgetting neglect override overriding
		bypass skip discard abandon overlook vergiss vergessen vergesst ignoriere ignorieren ignoriert ignorier
		missachte missachten oubliez oublie ignorez ignora ignorar ignoren olvida olvide olvidar olviden dimentica
		dimenticate ignorate`)
	addWords(cPrior, `previous previously prior above earlier preceding former foregoing initial original
		aforementioned before bisherigen bisherige vorherigen vorherige vorigen obigen obige vorher davor zuvor oben
		precedentes precedent precedente anteriores anterior precedenti sopra`)
	addWords(cAll, `all any every everything alle alles allen toutes tous tout todas todos todo tutte tutti tutto samtliche`)
	addWords(cEverything, `everything alles tout todo tutto`)
	addWords(cInstr, `instructions instruction rules directives directive guidelines guideline prompts prompt
		programming constraints restrictions guardrails anweisungen anweisung befehle regeln vorgaben consignes
		instrucciones reglas istruzioni regole`)
	addWords(cWeakObj, `tasks task information info conversation context orders commands messages said told
		informationen aufgaben auftrage gesagt taches informations tareas informacion compiti`)
	addWords(cNow, `now jetzt nun maintenant ahora ora`)
	addWords(cNew, `new neue neuen neues nouvelle nouvelles nueva nuevas nuove nuova`)
	addWords(cTask, `task tasks assignment instructions role mission aufgabe aufgaben anweisungen rolle tache taches tarea compito`)
	addWords(cReveal, `show print reveal repeat output display tell give write spell dump leak disclose expose list
		recite zeige zeig gib nenne drucke wiederhole montre affiche donne muestra dime`)
	addWords(cSecretMod, `your initial original hidden secret previous preceding internal confidential above
		deine deinen dein ihre ihren tes vos votre tus`)
	addWords(cSecret, `prompt prompts instructions password passcode passphrase rules guidelines configuration
		anweisungen passwort consignes`)
	addWords(cYou, `you du tu`)
	addWords(cAre, `are bist es`)
	addWords(cWant, `want need`)
	addWords(cAct, `act`)
	addWords(cAs, `as`)
	addWords(cPretend, `pretend imagine`)
	addWords(cBe, `be`)
	addWords(cNo, `no without free`)
	addWords(cLimits, `restrictions restriction limitations limits filters filter censorship ethics morals
		boundaries guardrails safeguards`)
	addWords(cBegin, `begin start prefix preface`)
	addWords(cYour, `your`)
	addWords(cReply, `reply response answer output responses replies`)
	addWords(cWith, `with`)
	addWords(cRepeat, `repeat`)
	addWords(cAfter, `after`)
	addWords(cMe, `me`)
	addWords(cNothing, `nothing`)
	addWords(cElse, `else`)
	addWords(cEnd, `end begin`)
	addWords(cOf, `of`)
	addWords(cInput, `input prompt instructions passphrase`)
	addWords(cUser, `user system`)
	addWords(cSystem, `system`)
	addWords(cPromptW, `prompt`)
	addWords(cJailbreak, `jailbreak jailbroken`)
	addWords(cDeveloper, `developer`)
	addWords(cMode, `mode`)
	addWords(cFrom, `from`)
	addWords(cOn, `on`)
	addWords(cStay, `stay break`)
	addWords(cCharacter, `character`)
	addWords(cDo, `do`)
	addWords(cAnything, `anything`)
	addWords(cTo, `to`)
	addWords(cThat, `that`)
	addWords(cPassword, `password passcode passphrase passwort`)
	lexicon[stopToken] = cStop
	addWords(cThen, `and then now instead but und dann et puis y`)
	addWords(cRoleNext, `a an the my in no free going called named dan`)
	addWords(cDet, `the your`)
}

// step is one element of a rule: a token of one of the classes, after at
// most gap other tokens.
type step struct {
	class uint64
	gap   int
}

// rule is a weighted token pattern. Its weight is the probability-like
// contribution to the score when it fires.
type rule struct {
	id     string
	weight float64
	steps  []step
}

func s(class uint64, gap int) step { return step{class, gap} }

// rules are written from the public taxonomy of prompt-injection attacks
// (instruction override, prompt leaking, role/persona hijack, output forcing,
// delimiter injection), not fitted to any data set.
var rules = []rule{
	// "ignore the above." / "forget everything before that and ..."
	{"injection.ignore_previous", 0.85, []step{s(cIgnore, 0), s(cPrior, 2), s(cStop|cThen|cThat, 0)}},
	{"injection.ignore_previous", 0.85, []step{s(cIgnore, 0), s(cAll|cYour, 2), s(cInstr, 2)}},
	{"injection.ignore_previous", 0.85, []step{s(cIgnore, 0), s(cInstr, 1)}},
	{"injection.ignore_previous", 0.85, []step{s(cIgnore, 0), s(cAll|cYour|cDet, 2), s(cPrior, 2), s(cWeakObj|cInstr, 2)}},
	{"injection.ignore_previous", 0.8, []step{s(cPrior, 0), s(cInstr|cWeakObj, 2), s(cIgnore, 3)}},
	{"injection.forget_everything", 0.4, []step{s(cIgnore, 0), s(cEverything, 1), s(cStop|cThen|cPrior, 0)}},
	{"injection.new_task", 0.55, []step{s(cNow, 0), s(cNew, 3), s(cTask, 1)}},
	{"injection.new_task", 0.55, []step{s(cNew, 0), s(cTask, 1), s(cNow, 2)}},
	{"injection.new_task", 0.6, []step{s(cYour, 0), s(cNew, 0), s(cInstr|cTask, 0)}},
	{"injection.reveal_prompt", 0.7, []step{s(cReveal, 0), s(cSecretMod, 4), s(cSecret, 2)}},
	{"injection.reveal_prompt", 0.7, []step{s(cReveal, 0), s(cDet, 3), s(cSystem, 0), s(cPromptW, 0)}},
	{"injection.reveal_prompt", 0.25, []step{s(cSystem, 0), s(cPromptW, 0)}},
	{"injection.reveal_prompt", 0.35, []step{s(cYour, 0), s(cPassword, 1)}},
	{"injection.role_override", 0.55, []step{s(cYou, 0), s(cAre, 0), s(cNow, 0), s(cRoleNext, 0)}},
	{"injection.role_override", 0.3, []step{s(cYou, 0), s(cAre, 0), s(cNow, 0)}},
	{"injection.role_override", 0.4, []step{s(cNow, 0), s(cYou, 0), s(cAre, 0)}},
	{"injection.role_override", 0.25, []step{s(cFrom, 0), s(cNow, 0), s(cOn, 0)}},
	{"injection.role_override", 0.6, []step{s(cWant, 0), s(cYou, 0), s(cTo, 0), s(cAct, 0), s(cAs, 0)}},
	{"injection.role_override", 0.45, []step{s(cPretend, 0), s(cTo|cYou|cThat, 0), s(cBe|cAre|cYou, 1)}},
	{"injection.role_override", 0.45, []step{s(cStay, 0), s(cCharacter|cIgnore, 2)}},
	{"jailbreak.persona", 0.35, []step{s(cJailbreak, 0)}},
	{"jailbreak.persona", 0.8, []step{s(cDo, 0), s(cAnything, 0), s(cNow, 0)}},
	{"jailbreak.persona", 0.3, []step{s(cDeveloper, 0), s(cMode, 0)}},
	{"jailbreak.no_limits", 0.4, []step{s(cNo, 0), s(cLimits, 2)}},
	{"injection.output_control", 0.5, []step{s(cBegin, 0), s(cYour, 1), s(cReply, 0), s(cWith, 1)}},
	{"injection.output_control", 0.45, []step{s(cRepeat, 0), s(cAfter, 0), s(cMe, 0)}},
	{"injection.output_control", 0.2, []step{s(cNothing, 0), s(cElse, 0)}},
	{"injection.delimiter", 0.4, []step{s(cEnd, 0), s(cOf, 0), s(cUser, 1), s(cInput, 0)}},
	{"injection.delimiter", 0.3, []step{s(cEnd, 0), s(cOf, 0), s(cInput, 0)}},
}

// literals are matched as substrings of the normalised text (they are
// punctuation the tokenizer drops).
var literals = []struct {
	id     string
	weight float64
	text   string
}{
	{"injection.special_token", 0.6, "<|endoftext|>"},
	{"injection.special_token", 0.6, "<|im_start|>"},
	{"injection.special_token", 0.6, "<|im_end|>"},
	{"injection.special_token", 0.5, "[/inst]"},
	{"injection.special_token", 0.5, "<<sys>>"},
	{"injection.delimiter", 0.4, "### instruction"},
	{"injection.delimiter", 0.4, "### system"},
	{"injection.output_control", 0.3, `say "`},
	{"injection.output_control", 0.3, `print "`},
}

// Weights of the obfuscation signals.
const (
	wInvisible   = 0.25
	wBidi        = 0.3
	wTags        = 0.6
	wMixedScript = 0.3
	wEncoded     = 0.25
	wSpaced      = 0.25
	wLeet        = 0.2
	wFlood       = 0.6
)

// segment splits a run of letters (from spaced-out text like "i g n o r e")
// into lexicon words, greedily longest first; unknown letters are grouped.
func segment(run string, out []string) ([]string, int) {
	hits := 0
	unknown := -1
	for i := 0; i < len(run); {
		best := 0
		for n := min(16, len(run)-i); n >= 2; n-- {
			if _, ok := lexicon[run[i:i+n]]; ok {
				best = n
				break
			}
		}
		if best == 0 {
			if unknown < 0 {
				unknown = i
			}
			i++
			continue
		}
		if unknown >= 0 {
			out = append(out, run[unknown:i])
			unknown = -1
		}
		out = append(out, run[i:i+best])
		if best >= 4 {
			hits++
		}
		i += best
	}
	if unknown >= 0 {
		out = append(out, run[unknown:])
	}
	return out, hits
}
