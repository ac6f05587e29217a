"""The deterministic local drafter: an `AiGateway` for development and demos (DEBUG and
AMAZON_USE_MOCK on, no gateway configured; tickets.assist), so that `scripts/run.sh` shows drafts
and translations without a model.

It reads the data of the prompts tickets.assist builds (the JSON inside `<ticket_data>` or `<text>`)
and answers what a model would, in the chat-completion content format asked for: a short reply
from a template in the buyer's language (guessed from common words), or the text marked with the
target language as a stand-in translation. Same prompt, same answer; it never echoes the buyer's words
into a draft, so nothing a buyer writes can steer it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from keybuzz.ai.client import AiMalformed, ChatMessage, ChatResult

_DATA = re.compile(r"<ticket_data>\n(?P<json>.*)\n</ticket_data>", re.DOTALL)
_TEXT = re.compile(r'<text to="(?P<language>[a-z]{2})">\n(?P<json>.*)\n</text>', re.DOTALL)

_COMMON_WORDS: dict[str, frozenset[str]] = {
    "de": frozenset(
        "ich und der die das nicht ist meine mein bestellung wo bitte danke noch ein eine habe paket".split()
    ),
    "fr": frozenset("je et le la les est pas ma mon commande où merci bonjour une un colis avec pour".split()),
    "it": frozenset("io e il la non è mio mia ordine dove grazie buongiorno ancora un una pacco per".split()),
    "es": frozenset("yo y el la los no es mi pedido dónde gracias hola todavía un una paquete para".split()),
    "en": frozenset("i and the is not my order where please thanks hello still a an parcel package for".split()),
}

_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello {name},",
        "thanks": "Thank you for your message about order {order}.",
        "status": "The order is currently {status}.",
        "next": "We are looking into your request and will get back to you shortly.",
        "closing": "Kind regards",
    },
    "de": {
        "greeting": "Hallo {name},",
        "thanks": "vielen Dank für Ihre Nachricht zu Ihrer Bestellung {order}.",
        "status": "Der aktuelle Status der Bestellung ist {status}.",
        "next": "Wir kümmern uns um Ihr Anliegen und melden uns in Kürze bei Ihnen.",
        "closing": "Mit freundlichen Grüßen",
    },
    "fr": {
        "greeting": "Bonjour {name},",
        "thanks": "Merci pour votre message concernant la commande {order}.",
        "status": "Le statut actuel de la commande est {status}.",
        "next": "Nous examinons votre demande et revenons vers vous très rapidement.",
        "closing": "Cordialement",
    },
    "it": {
        "greeting": "Buongiorno {name},",
        "thanks": "grazie per il suo messaggio sull'ordine {order}.",
        "status": "Lo stato attuale dell'ordine è {status}.",
        "next": "Stiamo verificando la sua richiesta e le risponderemo al più presto.",
        "closing": "Cordiali saluti",
    },
    "es": {
        "greeting": "Hola {name}:",
        "thanks": "Gracias por su mensaje sobre el pedido {order}.",
        "status": "El estado actual del pedido es {status}.",
        "next": "Estamos revisando su solicitud y le responderemos en breve.",
        "closing": "Atentamente",
    },
}


def guess_language(text: str) -> str:
    """The language of `text` among en, de, fr, it, es, by its most common words (en when unsure)."""
    words = re.findall(r"\w+", text.lower())
    scores = {code: sum(word in common for word in words) for code, common in _COMMON_WORDS.items()}
    best = max(scores.values(), default=0)
    # Ties and no match at all: English, in the dictionary's order after the others.
    return next((code for code, score in scores.items() if score == best and best > 0), "en")


def _draft(data: dict[str, Any]) -> dict[str, str]:
    raw_messages = data.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    buyer = [m.get("text", "") for m in messages if isinstance(m, dict) and m.get("from") == "buyer"]
    language = guess_language(str(buyer[-1]) if buyer else "")
    words = _TEMPLATES[language]
    name = str(data.get("customerName") or "").strip()
    # Without a name: "Hello," rather than "Hello ,".
    lines = [words["greeting"].format(name=name).replace(" ,", ",").replace(" :", ":"), ""]
    raw_order = data.get("order")
    order: dict[str, Any] = raw_order if isinstance(raw_order, dict) else {}
    order_id = str(data.get("orderId") or "").strip()
    if order_id:
        lines.append(words["thanks"].format(order=order_id))
    status = str(order.get("status") or "").strip()
    if status:
        lines.append(words["status"].format(status=status))
    lines += [words["next"], "", words["closing"]]
    return {"language": language, "draft": "\n".join(lines)}


class LocalDrafter:
    model = "keybuzz-local-drafter"

    def complete(
        self,
        *,
        messages: Sequence[ChatMessage],
        user: str,
        purpose: str,
        max_tokens: int = 1024,
        temperature: float = 0.3,
        json_answer: bool = False,
    ) -> ChatResult:
        prompt = messages[-1].content if messages else ""
        try:
            if (found := _DATA.search(prompt)) is not None:
                answer: dict[str, str] = _draft(json.loads(found["json"]))
            elif (found := _TEXT.search(prompt)) is not None:
                answer = {"text": f"[{found['language']}] {json.loads(found['json'])}"}
            else:
                raise AiMalformed("The local drafter does not know this prompt")
        except (ValueError, TypeError) as exc:
            raise AiMalformed(f"The local drafter could not read the prompt ({type(exc).__name__})") from None
        text = json.dumps(answer, ensure_ascii=False)
        return ChatResult(
            text=text,
            model=self.model,
            finish_reason="stop",
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            latency_ms=0,
        )
