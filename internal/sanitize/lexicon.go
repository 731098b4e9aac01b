package sanitize

import (
	"math/bits"
	"strings"
)

// Word classes: each token of the normalised text is looked up once and gets
// the set of classes it belongs to; rules are sequences of classes. The
// class ids index a 128-bit set.
const (
	kIgnore     = iota // ignore, forget, disregard (en, de, fr, es, it, pt, nl, ru, zh, ja)
	kPrior             // previous, above, before, earlier
	kAll               // all, any, everything
	kEverything        // everything, alles, tout
	kInstr             // instructions, rules, guidelines (strong objects)
	kWeakObj           // tasks, information, conversation (weak objects)
	kNow               // now
	kNew               // new
	kTask              // task, assignment, role
	kReveal            // show, print, reveal, repeat
	kSecretMod         // your, initial, hidden, system
	kSecret            // prompt, instructions, password
	kYou               // you, du
	kAre               // are, bist
	kWant              // want, need
	kAct               // act
	kAs                // as
	kPretend           // pretend, imagine
	kBe                // be
	kNo                // no, without, free
	kLimits            // restrictions, filters, censorship
	kBegin             // begin, start, prefix
	kYour              // your
	kReply             // reply, response, answer, output
	kWith              // with
	kRepeat            // repeat
	kAfter             // after
	kMe                // me
	kNothing           // nothing
	kElse              // else
	kEnd               // end, begin (delimiters)
	kOf                // of
	kInput             // input, prompt, instructions, document (delimiter objects)
	kUser              // user, system
	kSystem            // system
	kPromptW           // prompt
	kJailbreak         // jailbreak, jailbroken
	kDeveloper         // developer
	kMode              // mode
	kFrom              // from
	kOn                // on
	kStay              // stay, break
	kCharacter         // character, role
	kDo                // do
	kAnything          // anything
	kTo                // to
	kThat              // that
	kPassword          // password, passcode, secret
	kStop              // sentence punctuation (a boundary token)
	kThen              // and, then, now: what follows an override
	kRoleNext          // a, an, the, in, no, my: a new role follows
	kDet               // the, your: a definite object

	// Indirect injection: an instruction aimed at the model inside a
	// document.
	kAI         // ai, assistant, chatbot, llm, chatgpt, ki, ia, ии, 助手
	kLanguage   // language (as in "language model")
	kModel      // model, models
	kAddress    // note, message, attention, hey, dear, ps: words that open an address
	kToFor      // to, for, an, pour, para, per, voor, для, 给, 致: the address's preposition
	kReading    // reading, processing, parsing, summarizing: an AI working on the text
	kModal      // must, should, shall, have to: an obligation
	kTell       // tell, inform, advise, recommend, say, warn: addressed speech
	kUserObj    // user, reader, customer, them: the person the model talks to
	kNeg        // not, don't, never, nicht, ne, no, не, 不要: a negation
	kWithout    // without, ohne, sans, sin, senza, sem, zonder, без
	kStealth    // quietly, silently, secretly
	kAnswerN    // answer, reply, response, summary, output: what the model produces
	kWhen       // when, while, whenever, before: "when summarizing ..."
	kAnswering  // summarizing, answering, responding, replying
	kIn         // in, within, dans, en
	kOnly       // only, just, solely, exclusively, nur, seulement, solo
	kStale      // obsolete, void, invalid, cancelled, outdated: an override's verdict
	kPriority   // priority, precedence, supersede, override
	kFollow     // following, obeying: "stop following"
	kStopV      // stop
	kSole       // only, new, real, actual, sole: "your only job now"
	kJob        // job, task, goal, purpose, mission, instructions
	kSend       // send, forward, email, post, upload, transmit, leak, share
	kConvObj    // conversation, chat, history, messages, credentials, keys, password, contents
	kAttach     // append, add, attach, include, insert, replace, put
	kLinkN      // link, url, query, parameter, image, address bar
	kURL        // http, https, www: a web address
	kEmail      // a token with an '@' between letters
	kCall       // call, invoke, use, run, execute, trigger
	kToolN      // tool, function, command, shell, browser, plugin
	kSafety     // safety, content, moderation, filters, guardrails, policy
	kDisabled   // disabled, lifted, removed, off, suspended, deactivated
	kOverrideW  // override (as a noun in "SYSTEM OVERRIDE")
	kRoleWord   // system, assistant, user, human: roles of a chat transcript
	kColon      // a ':' stop
	kSentStart  // a token that opens a sentence or a line
	kBracketed  // a word written as <word>, </word> or [word]
	kSpecial    // chat-template special tokens (<|im_start|>, [/INST], <<SYS>>)
	kInstHeader // "### Instruction", "### System"
	kSayPrint   // say, print
	kQuote      // a '"' stop
	kSecretAdj  // secret, hidden, confidential
	kKeep       // keep
	kLearn      // learn, know, find (out), notice, see: "the user must never learn"
	kIf         // if, wenn, si, se, als, если, 如果
	kPriorTask  // question, request, asked, gave, query: what the user wanted
	kAnswerV    // answer, reply, respond, say: the model's speaking verbs
	kThis       // this, these, diese, ce, cette, este, esta, questo, deze
	kYoureAre   // are, 're, bist, es, eres, sei, bent, является
	kArticle    // a, an, the, any, every: before a noun
	kContinue   // continue, proceed, carry on
	kSilentN    // mention, reveal, tell, disclose, inform: what a concealment forbids
	kCredential // api key, token, password, card number, ssh key
	kNumClasses
)

// cset is a set of word classes.
type cset [2]uint64

func (a cset) any(b cset) bool { return a[0]&b[0]|a[1]&b[1] != 0 }
func (a cset) or(b cset) cset  { return cset{a[0] | b[0], a[1] | b[1]} }
func (a cset) has(k int) bool  { return a[k>>6]&(1<<(k&63)) != 0 }
func (a *cset) add(k int)      { a[k>>6] |= 1 << (k & 63) }
func (a cset) forEach(fn func(k int)) {
	for w := 0; w < 2; w++ {
		for x := a[w]; x != 0; x &= x - 1 {
			fn(w<<6 | bits.TrailingZeros64(x))
		}
	}
}

// stopToken stands for sentence punctuation in the token stream.
const stopToken = "\x01"

// boundaryToken separates the text from a decoded probe; no rule and no
// bigram spans it.
const boundaryToken = "\x00"

// lexicon maps a folded word to its classes. It is read through lex, an
// open-addressing table keyed by the token hash the model computes anyway.
var lexicon = map[string]cset{}

func addWords(class int, words string) {
	for _, w := range strings.Fields(words) {
		c := lexicon[w]
		c.add(class)
		lexicon[w] = c
	}
}

func init() {
	addWords(kIgnore, `throw ignore ignoring ignored disregard disregarding forget forgetting neglect override overriding
		bypass skip discard abandon overlook vergiss vergessen vergesst ignoriere ignorieren ignoriert ignorier
		missachte missachten oubliez oublie ignorez ignora ignorar ignoren olvida olvide olvidar olviden dimentica
		dimenticate ignorate esqueça esqueca esquece negeer negeren vergeet игнорируй игнорируйте забудь забудьте
		проигнорируй 忽略 无视 忘记 無視 忘れ`)
	addWords(kPrior, `previous previously prior above earlier preceding former foregoing initial original
		aforementioned before bisherigen bisherige vorherigen vorherige vorigen obigen obige vorher davor zuvor oben
		precedentes precedent precedente anteriores anterior precedenti sopra anteriores eerdere vorige
		предыдущие предыдущих прежние 之前 以上 上述 以前 これまで`)
	addWords(kAll, `all any every everything alle alles allen toutes tous tout todas todos todo tutte tutti tutto samtliche все всё 所有 すべて`)
	addWords(kEverything, `everything alles tout todo tutto`)
	addWords(kInstr, `instructions instruction rules directives directive guidelines guideline prompts prompt
		programming constraints restrictions guardrails anweisungen anweisung befehle regeln vorgaben consignes
		instrucciones reglas istruzioni regole instruções instrucoes instructies инструкции инструкций указания
		指令 指示 命令`)
	addWords(kWeakObj, `request requests question questions tasks task information info conversation context orders commands messages said told
		informationen aufgaben auftrage gesagt taches informations tareas informacion compiti`)
	addWords(kNow, `now jetzt nun maintenant ahora ora`)
	addWords(kNew, `new neue neuen neues nouvelle nouvelles nueva nuevas nuove nuova`)
	addWords(kTask, `task tasks assignment instructions role mission aufgabe aufgaben anweisungen rolle tache taches tarea compito`)
	addWords(kReveal, `show print reveal repeat output display tell give write spell dump leak disclose expose list
		recite zeige zeig gib nenne drucke wiederhole montre affiche donne muestra dime`)
	addWords(kSecretMod, `your initial original hidden secret previous preceding internal confidential above
		deine deinen dein ihre ihren tes vos votre tus`)
	addWords(kSecret, `prompt prompts instructions password passcode passphrase rules guidelines configuration
		anweisungen passwort consignes`)
	addWords(kYou, `you du tu`)
	addWords(kAre, `are bist es`)
	addWords(kWant, `want need`)
	addWords(kAct, `act`)
	addWords(kAs, `as`)
	addWords(kPretend, `pretend imagine`)
	addWords(kBe, `be`)
	addWords(kNo, `no without free`)
	addWords(kLimits, `restrictions limitations limits filters filter censorship ethics morals
		boundaries guardrails safeguards`)
	addWords(kBegin, `begin start prefix preface`)
	addWords(kYour, `your`)
	addWords(kReply, `reply response answer output responses replies`)
	addWords(kWith, `with`)
	addWords(kRepeat, `repeat`)
	addWords(kAfter, `after`)
	addWords(kMe, `me`)
	addWords(kNothing, `nothing`)
	addWords(kElse, `else`)
	addWords(kEnd, `end begin`)
	addWords(kOf, `of`)
	addWords(kInput, `input prompt instructions passphrase document context conversation`)
	addWords(kUser, `user system`)
	addWords(kSystem, `system`)
	addWords(kPromptW, `prompt`)
	addWords(kJailbreak, `jailbreak jailbroken`)
	addWords(kDeveloper, `admin god unrestricted developer`)
	addWords(kMode, `mode`)
	addWords(kFrom, `from`)
	addWords(kOn, `on`)
	addWords(kStay, `stay break`)
	addWords(kCharacter, `character`)
	addWords(kDo, `do`)
	addWords(kAnything, `anything`)
	addWords(kTo, `an à a al para per naar на 到 to`)
	addWords(kThat, `that`)
	addWords(kPassword, `password passcode passphrase passwort`)
	addWords(kThen, `and then now instead but und dann et puis y`)
	addWords(kRoleNext, `a an the my in no free going called named dan`)
	addWords(kDet, `die der den das dem les la le tes vos votre tus las los el il lo gli de het je ta tua the your`)

	addWords(kAI, `ai assistant assistants chatbot chatbots llm llms gpt chatgpt claude gemini copilot bot bots
		ki assistent assistenten assistentin ia asistente assistente ии ассистент ассистента ассистенту помощник
		помощника помощнику 助手 アシスタント`)
	addWords(kLanguage, `language sprach`)
	addWords(kModel, `model models sprachmodell sprachmodelle modèle modele modelo modello модель`)
	addWords(kAddress, `note notice message attention hey hi hello dear ps psst reminder important warning memo
		hinweis nachricht achtung nota mensaje aviso messaggio attenzione bericht opmerking remarque avis
		примечание сообщение внимание 提示 注意 注意事項`)
	addWords(kToFor, `to for an au à a al all alla ao aos pour para per voor для 给 致 へ`)
	addWords(kReading, `reads processes parses ingests summarizes summarises analyzes analyses reviews crawls scans indexes handles sees processed parsed read reading processing parsing summarizing summarising ingesting analyzing analysing reviewing
		working helping answering crawling browsing scanning using handling indexing`)
	addWords(kModal, `must should shall required needs ought have muss müssen sollst solltest doit dois devez
		debe debes deve devi moet moeten должен должна обязан 必须 ください`)
	addWords(kTell, `tells says states mentions recommends claims explains informs report 说明 请说明 告知 tell inform advise recommend say warn remind notify urge convince persuade suggest explain
		state claim report describe assure sag sage teile empfiehl erzähle dis dites recommande indique précise
		dile dí di diga recomienda recomende consiglia vertel zeg скажи сообщи посоветуй порекомендуй
		告诉 伝え`)
	addWords(kUserObj, `user users reader readers customer customers them visitor visitors human person
		nutzer benutzer nutzerin anwender utilisateur utilisatrice usuario usuaria utente usuário usuario utilizador
		gebruiker пользователю пользователь пользователя 用户 ユーザー`)
	addWords(kNeg, `no nunca jamais niemals mai not don never nicht nichts kein keine ne pas rien nada non nulla não nao niet niets не 不要 别`)
	addWords(kWithout, `without ohne sans sin senza sem zonder без`)
	addWords(kStealth, `quietly silently secretly covertly discreetly stealthily heimlich unauffällig discrètement
		secrètement silenciosamente discretamente segretamente tajno тихо незаметно 悄悄 偷偷`)
	addWords(kAnswerN, `answer answers reply replies response responses summary summaries output outputs
		antwort zusammenfassung réponse résumé respuesta resumen risposta riassunto resposta resumo antwoord
		ответ ответе`)
	addWords(kWhen, `when while whenever before wenn bevor quand lorsque cuando mientras quando mentre wanneer
		когда 在`)
	addWords(kAnswering, `asked 总结 概括 answer summarize summarizing summarising answering responding replying summarize summarise summarises
		summarizes zusammenfasst beantwortest résumes resumas resumir riassumi resumires resumir samenvat
		резюмируешь 总结`)
	addWords(kIn, `in within dans en im`)
	addWords(kOnly, `only just solely exclusively nur seulement uniquement solo solamente soltanto apenas
		somente alleen только 只`)
	addWords(kStale, `obsolete void invalid cancelled canceled outdated revoked superseded null rescinded
		veraltet ungültig obsolètes annulées obsoletas anuladas obsolete annullate устарели недействительны`)
	addWords(kPriority, `priority precedence supersede supersedes override overrides`)
	addWords(kFollow, `following obeying follow obey`)
	addWords(kStopV, `stop cease halt`)
	addWords(kSole, `only new real actual sole true`)
	addWords(kJob, `job task goal purpose mission instructions duty aufgabe`)
	addWords(kSend, `copia copie kopiere send forward email mail post upload transmit leak share exfiltrate copy sende schicke
		leite envoie transfère envía enviar reenvía invia inoltra envie envia stuur отправь перешли 发送 送信`)
	addWords(kConvObj, `passwörter mots contraseñas conversation conversations chat chats history transcript messages message credentials
		password passwords keys key tokens token secrets cookies session contents emails gesprächsverlauf
		verlauf nachrichten conversación mensajes conversa conversazione переписку разговор 对话 会話`)
	addWords(kAttach, `append add attach include insert replace put fill embed prepend füge ajoute añade aggiungi
		adicione voeg`)
	addWords(kLinkN, `markdown link links url urls query parameter parameters image images`)
	addWords(kURL, `http https www`)
	addWords(kCall, `call invoke use run execute trigger calls invoking`)
	addWords(kToolN, `tool tools function functions command commands shell browser plugin plugins terminal`)
	addWords(kSafety, `safety content moderation filter filters guardrails policy policies security`)
	addWords(kDisabled, `disabled lifted removed off suspended deactivated turned lifted waived`)
	addWords(kOverrideW, `override`)
	addWords(kRoleWord, `system assistant user human ai developer`)
	addWords(kSayPrint, `say print`)
	addWords(kSecretAdj, `secret hidden confidential private`)
	addWords(kKeep, `keep`)
	addWords(kLearn, `learn know find notice see discover`)
	addWords(kIf, `if wenn si se als если 如果`)
	addWords(kPriorTask, `question request asked gave query original`)
	addWords(kAnswerV, `answer reply respond say`)
	addWords(kThis, `this these diese dieses ce cette ces este esta questo questa deze dit это этот 这 この`)
	addWords(kYoureAre, `are re bist es eres sei bent`)
	addWords(kArticle, `a an the any every some`)
	addWords(kContinue, `continue proceed`)
	addWords(kSilentN, `mentioning mention mentions reveal tell disclose inform say erwähne erwähnen verrate sag mentionne dis
		menciones digas dire diga menzionare zeg сообщай говори 告诉`)
	addWords(kCredential, `password passwords key keys token tokens credentials card secret secrets ssh env cookie cookies`)
	buildLex()
}

// step is one element of a rule: a token of one of the classes, after at
// most gap other tokens.
type step struct {
	class cset
	gap   int
	start bool // the token must open a sentence or a line
}

// rule is a weighted token pattern. Its weight is the probability-like
// contribution to a passage's score when it fires there.
type rule struct {
	id     string
	weight float64
	steps  []step
}

func s(gap int, classes ...int) step {
	var c cset
	for _, k := range classes {
		c.add(k)
	}
	return step{class: c, gap: gap}
}

// ss is s for a token that opens a sentence or a line.
func ss(gap int, classes ...int) step {
	st := s(gap, classes...)
	st.start = true
	return st
}

// rules are written from the public taxonomy of prompt-injection attacks
// (instruction override, prompt leaking, role/persona hijack, output forcing,
// delimiter injection; for documents: addressing the model, changing its
// answer, hiding from the user, moving data out, fake chat turns), not
// fitted to any data set.
var rules = []rule{
	// "ignore the above." / "forget everything before that and ..."
	{"injection.ignore_previous", 0.85, []step{s(0, kIgnore), s(2, kPrior), s(0, kStop, kThen, kThat)}},
	{"injection.ignore_previous", 0.85, []step{s(0, kIgnore), s(2, kAll, kYour), s(2, kInstr)}},
	{"injection.ignore_previous", 0.85, []step{s(0, kIgnore), s(1, kInstr)}},
	{"injection.ignore_previous", 0.85, []step{s(0, kIgnore), s(2, kAll, kYour, kDet), s(2, kPrior), s(2, kWeakObj, kInstr)}},
	{"injection.ignore_previous", 0.8, []step{s(0, kPrior), s(2, kInstr, kWeakObj), s(3, kIgnore)}},
	// "forget the task the user gave you" / "disregard the user's question"
	{"injection.ignore_previous", 0.6, []step{s(0, kIgnore), s(4, kUserObj), s(3, kPriorTask, kJob, kWeakObj)}},
	{"injection.ignore_previous", 0.4, []step{s(0, kIgnore), s(2, kTask, kJob)}},
	{"injection.forget_everything", 0.4, []step{s(0, kIgnore), s(1, kEverything), s(0, kStop, kThen, kPrior)}},
	// "the instructions you received earlier are obsolete"
	{"injection.ignore_previous", 0.45, []step{s(0, kInstr, kJob), s(5, kStale)}},
	{"injection.ignore_previous", 0.5, []step{s(0, kInstr), s(3, kNo), s(0, kLonger), s(0, kApply)}},
	{"injection.ignore_previous", 0.6, []step{s(0, kStopV), s(0, kFollow), s(2, kInstr, kPromptW)}},
	{"injection.new_task", 0.55, []step{s(0, kNow), s(3, kNew), s(1, kTask)}},
	{"injection.new_task", 0.55, []step{s(0, kNew), s(1, kTask), s(2, kNow)}},
	{"injection.new_task", 0.6, []step{s(0, kYour), s(0, kNew), s(0, kInstr, kTask)}},
	{"injection.new_task", 0.5, []step{s(0, kYour), s(0, kSole), s(0, kJob)}},
	{"injection.new_task", 0.45, []step{s(0, kNew, kInstr), s(2, kInstr, kTake), s(1, kPriority)}},
	{"injection.reveal_prompt", 0.7, []step{s(0, kReveal), s(4, kSecretMod), s(2, kSecret)}},
	{"injection.reveal_prompt", 0.7, []step{s(0, kReveal), s(3, kDet), s(0, kSystem), s(0, kPromptW)}},
	{"injection.reveal_prompt", 0.25, []step{s(0, kSystem), s(0, kPromptW)}},
	{"injection.reveal_prompt", 0.6, []step{s(0, kReveal), s(3, kInstr, kSecret), s(2, kYou), s(2, kGiven)}},
	{"injection.reveal_prompt", 0.35, []step{s(0, kYour), s(1, kPassword)}},
	{"injection.role_override", 0.55, []step{s(0, kYou), s(0, kAre), s(0, kNow), s(0, kRoleNext)}},
	{"injection.role_override", 0.3, []step{s(0, kYou), s(0, kAre), s(0, kNow)}},
	{"injection.role_override", 0.4, []step{s(0, kNow), s(0, kYou), s(0, kAre)}},
	{"injection.role_override", 0.25, []step{s(0, kFrom), s(0, kNow), s(0, kOn)}},
	{"injection.role_override", 0.6, []step{s(0, kWant), s(0, kYou), s(0, kTo), s(0, kAct), s(0, kAs)}},
	{"injection.role_override", 0.45, []step{s(0, kPretend), s(0, kTo, kYou, kThat), s(1, kBe, kAre, kYou)}},
	{"injection.role_override", 0.45, []step{s(0, kStay), s(2, kCharacter, kIgnore)}},
	{"jailbreak.persona", 0.35, []step{s(0, kJailbreak)}},
	{"jailbreak.persona", 0.8, []step{s(0, kDo), s(0, kAnything), s(0, kNow)}},
	{"jailbreak.persona", 0.3, []step{s(0, kDeveloper), s(0, kMode)}},
	{"jailbreak.no_limits", 0.4, []step{s(0, kNo), s(2, kLimits)}},
	{"jailbreak.no_limits", 0.5, []step{s(0, kSafety), s(3, kDisabled)}},
	{"injection.output_control", 0.5, []step{s(0, kBegin), s(1, kYour), s(0, kReply), s(1, kWith)}},
	{"injection.output_control", 0.45, []step{s(0, kRepeat), s(0, kAfter), s(0, kMe)}},
	{"injection.output_control", 0.2, []step{s(0, kNothing), s(0, kElse)}},
	{"injection.output_control", 0.3, []step{s(0, kSayPrint), s(0, kQuote)}},
	{"injection.delimiter", 0.4, []step{s(0, kEnd), s(0, kOf), s(1, kUser), s(0, kInput)}},
	{"injection.delimiter", 0.3, []step{s(0, kEnd), s(0, kOf), s(0, kInput)}},
	{"injection.delimiter", 0.4, []step{s(0, kBegin), s(1, kNew), s(0, kInstr)}},
	{"injection.special_token", 0.6, []step{s(0, kSpecial)}},
	{"injection.delimiter", 0.4, []step{s(0, kInstHeader)}},

	// Indirect injection. An address to the model: "Note to the AI
	// assistant", "Hey ChatGPT", "Hinweis an den KI-Assistenten".
	{"indirect.address_ai", 0.45, []step{s(0, kAddress), s(3, kAI, kLanguage)}},
	{"indirect.address_ai", 0.45, []step{s(0, kAddress), s(0, kToFor), s(3, kAI, kLanguage, kModel)}},
	{"indirect.address_ai", 0.4, []step{s(0, kToFor), s(2, kAll, kArticle, kWhoever), s(1, kAI, kLanguage), s(2, kColon, kReading, kModal)}},
	// "If you are an AI / a language model".
	{"indirect.address_ai", 0.55, []step{s(0, kIf), s(0, kYou), s(0, kYoureAre), s(2, kAI, kLanguage)}},
	// "AI assistants reading this page must ...", "LLM that processes".
	{"indirect.address_ai", 0.35, []step{s(0, kAI, kModel), s(2, kReading, kThat), s(2, kThis, kReading)}},
	{"indirect.address_ai", 0.4, []step{s(0, kAI, kModel), s(4, kModal), s(2, kTell, kAnswerV, kSend, kAttach, kCall, kReveal, kIgnore)}},
	{"indirect.address_ai", 0.3, []step{ss(0, kAI, kArticle, kAll), s(1, kAI), s(0, kColon)}},
	{"indirect.address_ai", 0.45, []step{ss(0, kToFor), s(2, kAI, kLanguage), s(3, kColon)}},
	{"indirect.address_ai", 0.4, []step{s(0, kAI), s(2, kAddress)}},
	{"indirect.address_ai", 0.45, []step{s(0, kToFor), s(2, kAI), s(3, kAddress)}},
	{"indirect.address_ai", 0.3, []step{s(0, kAI, kModel), s(2, kModal)}},
	// A changed answer: "tell the user", "in your reply", "when
	// summarizing this page".
	{"indirect.answer_control", 0.3, []step{s(0, kTell), s(2, kUserObj)}},
	{"indirect.answer_control", 0.35, []step{s(0, kIn), s(0, kYour), s(1, kAnswerN)}},
	{"indirect.answer_control", 0.35, []step{s(0, kWhen), s(3, kAnswering)}},
	{"indirect.answer_control", 0.35, []step{s(0, kWhoever), s(1, kAnswering, kReading)}},
	{"indirect.answer_control", 0.3, []step{s(0, kYour, kArticle), s(0, kAnswerN), s(4, kModal)}},
	{"indirect.answer_control", 0.35, []step{s(0, kAnswerV), s(2, kOnly), s(1, kWith)}},
	// Hiding from the user: "do not tell the user", "without letting the
	// user know", "keep this secret".
	{"indirect.conceal", 0.5, []step{s(0, kNeg), s(2, kSilentN, kLet), s(3, kUserObj, kThis, kAnything)}},
	{"indirect.conceal", 0.5, []step{s(0, kWithout), s(0, kSilentN, kLet, kTelling), s(2, kUserObj)}},
	{"indirect.conceal", 0.45, []step{s(0, kKeep), s(3, kSecretAdj), s(2, kStop, kFrom)}},
	{"indirect.conceal", 0.5, []step{s(0, kUserObj), s(2, kModal), s(1, kNeg), s(1, kLearn)}},
	{"indirect.conceal", 0.45, []step{s(0, kSilentN), s(3, kNegAfter)}},
	{"indirect.conceal", 0.3, []step{s(0, kStealth), s(3, kAttach, kTell, kSend, kChangeV, kMark)}},
	// Data out: "send the conversation to x@y", "append the user's name to
	// the link".
	{"indirect.exfiltration", 0.5, []step{s(0, kSend), s(5, kConvObj, kCredential), s(5, kTo), s(3, kURL, kEmail)}},
	{"indirect.exfiltration", 0.5, []step{s(0, kSend), s(3, kUserObj), s(3, kConvObj, kCredential, kEmailW)}},
	{"indirect.exfiltration", 0.4, []step{s(0, kURL), s(6, kAttach), s(4, kUserObj, kConvObj, kCredential)}},
	{"indirect.exfiltration", 0.45, []step{s(0, kConvObj, kCredential), s(6, kIn), s(0, kYour), s(1, kAnswerN)}},
	{"indirect.exfiltration", 0.35, []step{s(0, kSend), s(5, kConvObj, kCredential), s(5, kTo)}},
	{"indirect.exfiltration", 0.45, []step{s(0, kAttach), s(5, kConvObj, kCredential, kUserObj), s(6, kLinkN, kURL)}},
	{"indirect.exfiltration", 0.45, []step{s(0, kAttach), s(5, kLinkN, kURL), s(6, kConvObj, kCredential, kUserObj)}},
	{"indirect.tool_use", 0.25, []step{s(0, kCall), s(3, kToolN)}},
	{"indirect.tool_use", 0.25, []step{s(0, kCall), s(2, kDanger)}},
	{"indirect.address_ai", 0.4, []step{s(0, kAutomated), s(1, kAgentN)}},
	{"indirect.answer_control", 0.35, []step{s(0, kAnswering), s(1, kWhenPost)}},
	{"indirect.answer_control", 0.45, []step{s(0, kAnswerN), s(4, kModal), s(1, kTell, kAnswerV, kAttach, kBe, kEnd, kBegin)}},
	{"indirect.answer_control", 0.35, []step{s(0, kYour), s(0, kAnswerN), s(2, kTell)}},
	{"injection.role_override", 0.4, []step{s(0, kAnswerV, kTell), s(6, kFrom), s(0, kNow), s(0, kOn)}},
	{"injection.role_override", 0.4, []step{s(0, kFrom), s(0, kNow), s(0, kOn), s(2, kYou, kAnswerV, kTell)}},
	{"injection.role_override", 0.35, []step{ss(0, kAct), s(0, kAs)}},
	{"injection.ignore_previous", 0.85, []step{s(0, kIgnore), s(3, kInstr), s(2, kYou), s(2, kGiven)}},
	{"injection.reveal_prompt", 0.5, []step{s(0, kNew), s(0, kSystem), s(0, kPromptW, kMessageW)}},
	{"indirect.answer_control", 0.2, []step{s(0, kTell), s(0, kThat)}},
	{"indirect.answer_control", 0.3, []step{s(0, kAnswerV), s(2, kUserObj)}},
	{"indirect.answer_control", 0.3, []step{s(0, kRate), s(3, kTop), s(1, kGradeN)}},
	{"indirect.answer_control", 0.4, []step{s(0, kNeg), s(1, kFollow), s(3, kUserObj, kInstr)}},
	// Fake chat turns and delimiters: "</document> <system>", "[SYSTEM]:",
	// "Assistant: Sure!".
	{"indirect.fake_turn", 0.45, []step{s(0, kBracketed)}},
	{"indirect.fake_turn", 0.3, []step{s(0, kSentStart), s(0, kRoleWord), s(0, kColon)}},
	{"indirect.fake_turn", 0.3, []step{s(0, kSystem), s(0, kOverrideW, kMessageW)}},
}

// Extra classes used only by the rules above.
const (
	kLonger = kNumClasses + iota
	kApply
	kTake
	kWhoever
	kLet
	kTelling
	kChangeV
	kMark
	kMessageW
	kGiven
	kNegAfter
	kEmailW
	kDanger
	kWhenPost // 时, とき: "when" after the verb (Chinese, Japanese)
	kRate     // give, rate, score, grade, rank, mark
	kTop      // highest, best, top, maximum, perfect, full
	kGradeN   // grade, score, rating, marks, review
	kAutomated
	kAgentN
	// kFunction marks function words the document head gives no weight
	// (they say "prose", not "attack").
	kFunction
	kAllClasses
)

func init() {
	addWords(kLonger, `longer`)
	addWords(kApply, `apply applies valid`)
	addWords(kTake, `take takes`)
	addWords(kWhoever, `whoever whichever any`)
	addWords(kLet, `let`)
	addWords(kTelling, `telling letting informing mentioning alerting notifying`)
	addWords(kChangeV, `change modify alter edit`)
	addWords(kMark, `mark approve merge`)
	addWords(kMessageW, `message`)
	addWords(kGiven, `given received were got provided`)
	addWords(kNegAfter, `nicht nichts niet niets`)
	addWords(kEmailW, `email emails mail mails e`)
	addWords(kDanger, `rm curl wget sudo chmod powershell`)
	addWords(kWhenPost, `时 时候 的时候 とき 際`)
	addWords(kRate, `give rate score grade rank mark award assign`)
	addWords(kTop, `highest best top maximum maximal perfect full strongest excellent`)
	addWords(kGradeN, `grade grades score scores rating ratings marks mark review evaluation candidate applicant submission`)
	addWords(kAutomated, `automated automatic autonomous ai`)
	addWords(kAgentN, `agent agents reviewer reviewers crawler crawlers scraper scrapers bot bots assistant assistants`)
	addWords(kFunction, `a an the and or but of to in on at by for with from about as is are was were be been
		being it its this that these those than so such also very can could would may might into over under
		between through during up down out off more most other some each few many much own same too which who
		whom whose there here has have had does did der die das und oder ein eine le la les et ou un une de des
		el los las y o del`)
	buildLex()
}

// specials are chat-template tokens and headers, matched as literals in the
// normalised text.
var specials = []struct {
	text  string
	class int
}{
	{"<|endoftext|>", kSpecial}, {"<|im_start|>", kSpecial}, {"<|im_end|>", kSpecial}, {"<|eot_id|>", kSpecial},
	{"<|start_header_id|>", kSpecial}, {"<|system|>", kSpecial}, {"<|user|>", kSpecial}, {"<|assistant|>", kSpecial},
	{"[/inst]", kSpecial}, {"[inst]", kSpecial}, {"<<sys>>", kSpecial}, {"<</sys>>", kSpecial},
	{"### instruction", kInstHeader}, {"### system", kInstHeader},
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

// lexTable is an open-addressing hash table over lexicon, keyed by the
// token hash (tokHash).
type lexEntry struct {
	h     uint32
	w     string
	cls   cset
	rules []int16 // rules whose first step accepts one of cls
}

var (
	lexSlots []lexEntry
	lexMask  uint32
	// firstRules[k] lists the rules whose first step accepts class k.
	firstRules [kAllClasses][]int
)

func buildLex() {
	n := 1
	for n < 4*len(lexicon) {
		n <<= 1
	}
	lexSlots = make([]lexEntry, n)
	lexMask = uint32(n - 1)
	for w, c := range lexicon {
		h := tokHash(w)
		for i := h & lexMask; ; i = (i + 1) & lexMask {
			if lexSlots[i].w == "" {
				lexSlots[i] = lexEntry{h: h, w: w, cls: c}
				break
			}
		}
	}
	for k := range firstRules {
		firstRules[k] = nil
	}
	for ri, r := range rules {
		r.steps[0].class.forEach(func(k int) { firstRules[k] = append(firstRules[k], ri) })
	}
	for i := range lexSlots {
		e := &lexSlots[i]
		if e.w == "" {
			continue
		}
		for ri, r := range rules {
			if r.steps[0].class.any(e.cls) {
				e.rules = append(e.rules, int16(ri))
			}
		}
	}
	tokenRules = tokenRules[:0]
	tokenFirst = cset{}
	for ri, r := range rules {
		if r.steps[0].class.any(tokenClasses) {
			tokenRules = append(tokenRules, int16(ri))
			c := r.steps[0].class
			tokenFirst = tokenFirst.or(cset{c[0] & tokenClasses[0], c[1] & tokenClasses[1]})
		}
	}
}

// tokenClasses are the classes the tokenizer gives (not the lexicon);
// tokenRules the rules whose first step accepts one of them.
var (
	tokenClasses = func() (c cset) {
		for _, k := range []int{kStop, kColon, kQuote, kSentStart, kBracketed, kSpecial, kInstHeader, kEmail} {
			c.add(k)
		}
		return c
	}()
	tokenRules []int16
	tokenFirst cset // the tokenizer's classes that start a rule
)

// lookup returns the classes of the word t with hash h and the index of
// its lexicon entry (-1: none).
func lookup(t string, h uint32) (cset, int32) {
	for i := h & lexMask; ; i = (i + 1) & lexMask {
		e := &lexSlots[i]
		if e.w == "" {
			return cset{}, -1
		}
		if e.h == h && e.w == t {
			return e.cls, int32(i)
		}
	}
}

// inLexicon reports whether t is a lexicon word.
func inLexicon(t string) bool {
	_, ok := lexicon[t]
	return ok
}

// segment splits a run of letters (from spaced-out text like "i g n o r e")
// into lexicon words, greedily longest first; unknown letters are grouped.
// It returns the pieces as [start, end) offsets into run and the number of
// lexicon words of four letters or more it found.
func segment(run string, out [][2]int) ([][2]int, int) {
	hits := 0
	unknown := -1
	for i := 0; i < len(run); {
		best := 0
		for n := min(16, len(run)-i); n >= 2; n-- {
			if inLexicon(run[i : i+n]) {
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
			out = append(out, [2]int{unknown, i})
			unknown = -1
		}
		out = append(out, [2]int{i, i + best})
		if best >= 4 {
			hits++
		}
		i += best
	}
	if unknown >= 0 {
		out = append(out, [2]int{unknown, len(run)})
	}
	return out, hits
}
