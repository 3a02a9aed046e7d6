"""Text analysis and suggestion ranking: pure functions, then the service on both databases."""

from __future__ import annotations

import time

import pytest

from omnicanal.answers import search
from omnicanal.answers.demo_data import load_demo_answers
from omnicanal.answers.schemas import AnswerCreate, AnswerUpdate
from omnicanal.answers.service import Suggestion, create_answer, suggest, update_answer
from omnicanal.db import Database
from omnicanal.errors import ValidationFailed

ACTOR = "test:answers"


def test_normalize_strips_accents_and_case() -> None:
    assert search.normalize("¿A QUÉ hora abrís el Sábado?") == "¿a que hora abris el sabado?"
    assert search.tokenize("¿A qué hora abrís el sábado? 10:00") == ["que", "hora", "abris", "el", "sabado", "10", "00"]


@pytest.mark.parametrize(
    ("words", "language"),
    [
        (["devolución", "devoluciones"], "es"),
        (["tienda", "tiendas"], "es"),
        (["abrís", "abrimos", "abren"], "es"),
        (["sábado", "sábados"], "es"),
        (["pedido", "pedidos"], "es"),
        (["rápida", "rápidamente"], "es"),
        (["order", "orders", "ordered", "ordering"], "en"),
        (["open", "opens", "opening", "opened"], "en"),
        (["policy", "policies"], "en"),
        (["ship", "shipping", "shipped"], "en"),
    ],
)
def test_stemmer_conflates_forms(words: list[str], language: str) -> None:
    stems = {search.stem(search.normalize(word), language) for word in words}
    assert len(stems) == 1, stems


def test_stop_words_dropped_unless_nothing_else_is_left() -> None:
    assert search.query_terms("¿a qué hora abrís el sábado?", "es") == ["hor", "abr", "sab"]
    assert search.query_terms("where is my order", "en") == ["order"]
    assert search.query_terms("what is this", "en") == ["what", "is", "this"]


def test_bm25_prefers_rarer_terms_and_higher_frequency() -> None:
    def doc(number: int, text: str) -> search.Document:
        terms = search.answer_terms(title="", body=text, tags=[], shortcut=None, language="en")
        import uuid

        return search.Document(uuid.UUID(int=number), terms, sum(terms.values()))

    docs = [doc(1, "order order status"), doc(2, "order returns"), doc(3, "store hours"), doc(4, "returns policy")]
    scores = search.bm25(["order", "status"], docs)
    assert set(scores) == {docs[0].id, docs[1].id}
    assert scores[docs[0].id] > scores[docs[1].id]


def test_variables_and_link_targets_are_not_indexed() -> None:
    terms = search.answer_terms(
        title="Saludo", body="Hola {{customer.first_name}}, mira [aquí](https://orders.example/status)",
        tags=[], shortcut=None, language="es",
    )  # fmt: skip
    assert not {"customer", "first", "name", "orders", "status", "https"} & set(terms)


# ---------------------------------------------------------------------------- the service, on both databases


def titles(suggestions: list[Suggestion]) -> list[str]:
    return [s.answer.title for s in suggestions]


@pytest.fixture
def library(db: Database) -> Database:
    with db.write() as session:
        load_demo_answers(session, ACTOR)
        # distractors that share words with the real answers
        for language, title, body in [
            ("es", "Tarjeta regalo", "La tarjeta regalo se puede usar en tienda y en la web durante un año."),
            ("es", "Cita previa", "Reserva una hora con nuestro personal de tienda desde la web."),
            ("en", "Gift cards", "Gift cards can be used in store and online for one year."),
            ("en", "Order changes", "Once paid, an order cannot be changed; cancel it and place a new one."),
        ]:
            create_answer(session, data=AnswerCreate(title=title, body=body, language=language), actor=ACTOR)
    return db


def test_spanish_opening_hours_question_ranks_the_opening_hours_answer_first(library: Database) -> None:
    with library.read() as session:
        found = suggest(session, text="¿a qué hora abrís el sábado?", language="es")
    assert titles(found)[0] == "Horario de apertura de las tiendas"
    assert all(s.same_language and s.answer.language == "es" for s in found)
    assert found == sorted(found, key=lambda s: -s.score)


def test_english_where_is_my_order_ranks_order_status_first(library: Database) -> None:
    with library.read() as session:
        found = suggest(session, text="Hi, where is my order??", language="en")
    assert titles(found)[0] == "Where is my order? Order status"
    assert all(s.answer.language == "en" for s in found)


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("quiero devolver unas zapatillas, ¿cómo hago la devolución?", "es", "Política de devoluciones"),
        ("¿Puedo recoger el pedido en tienda?", "es", "Recogida en tienda"),
        ("hola", "es", "Saludo"),
        ("Can I return these shoes? What's your returns policy", "en", "Return policy"),
        ("what time do your stores open on sunday", "en", "Store opening hours"),
    ],
)
def test_more_realistic_questions(library: Database, text: str, language: str, expected: str) -> None:
    with library.read() as session:
        assert titles(suggest(session, text=text, language=language))[0] == expected


def test_the_customers_language_wins(library: Database) -> None:
    with library.read() as session:
        # "pedido" (es) and "order"... the same intent exists in both: the customer's language only
        spanish = suggest(session, text="pedido order", language="es-MX")
        english = suggest(session, text="pedido order", language="en-GB")
        # nothing in Spanish matches an English-only question: English answers, scored lower and marked
        fallback = suggest(session, text="where is my order", language="es")
        native = suggest(session, text="where is my order", language="en")
    assert spanish and all(s.answer.language == "es" and s.same_language for s in spanish)
    assert english and all(s.answer.language == "en" and s.same_language for s in english)
    assert titles(fallback)[0] == "Where is my order? Order status"
    assert not any(s.same_language for s in fallback)
    assert fallback[0].score < native[0].score


def test_inactive_and_edited_answers(library: Database) -> None:
    with library.read() as session:
        first = suggest(session, text="¿a qué hora abrís el sábado?", language="es")[0]
    with library.write() as session:
        update_answer(session, answer_id=first.answer.id, changes=AnswerUpdate(active=False), actor=ACTOR)
    with library.read() as session:
        assert first.answer.id not in [s.answer.id for s in suggest(session, text="horario sábado", language="es")]
    with library.write() as session:
        update_answer(
            session,
            answer_id=first.answer.id,
            changes=AnswerUpdate(active=True, body="Abrimos los festivos de 11:00 a 15:00 en Navidad."),
            actor=ACTOR,
        )
    with library.read() as session:
        assert titles(suggest(session, text="¿abrís en navidad?", language="es", limit=1)) == [first.answer.title]


def test_no_match_and_bad_input(library: Database) -> None:
    with library.read() as session:
        assert suggest(session, text="xyzzy plugh", language="es") == []
        with pytest.raises(ValidationFailed):
            suggest(session, text="  ", language="es")
        with pytest.raises(ValidationFailed):
            suggest(session, text="hola", language="spanish")
        with pytest.raises(ValidationFailed):
            suggest(session, text="hola", language="es", limit=0)


def test_suggest_stays_fast_with_thousands_of_answers(db: Database) -> None:
    """Not a benchmark: a guard against an accidental quadratic path (3,000 answers, warm cache)."""
    words = [
        "envío",
        "tienda",
        "pedido",
        "devolución",
        "talla",
        "color",
        "zapatilla",
        "chaqueta",
        "regalo",
        "tarjeta",
        "cuenta",
        "pago",
    ]
    with db.write() as session:
        load_demo_answers(session, ACTOR)
        for index in range(3000):
            picked = " ".join(words[(index * k) % len(words)] for k in range(1, 30))
            create_answer(
                session,
                data=AnswerCreate(title=f"Respuesta {index}", body=picked, language="es" if index % 3 else "en"),
                actor=ACTOR,
            )
    with db.read() as session:
        suggest(session, text="¿a qué hora abrís el sábado?", language="es")  # fills the cache
        started = time.perf_counter()
        found = suggest(session, text="¿a qué hora abrís el sábado?", language="es")
        elapsed = time.perf_counter() - started
    assert titles(found)[0] == "Horario de apertura de las tiendas"
    assert elapsed < 1.0, elapsed


def test_courtesy_words_weigh_little_beside_a_question() -> None:
    assert search.weighted_query("hola", "es") == {"hol": 1.0}
    assert search.weighted_query("Hola, ¿dónde está mi pedido?", "es") == {"hol": 0.2, "ped": 1.0}


def test_a_greeting_before_the_question_does_not_win(library: Database) -> None:
    with library.read() as session:
        assert titles(suggest(session, text="¡Hola! ¿Dónde está mi pedido?", language="es"))[0] == (
            "¿Dónde está mi pedido? Estado del pedido"
        )
        assert titles(suggest(session, text="Hello! Where is my order? It's been a week", language="en"))[0] == (
            "Where is my order? Order status"
        )
        assert titles(suggest(session, text="Hello there", language="en"))[0] == "Greeting"
