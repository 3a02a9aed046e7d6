"""Demo answers in Spanish and English: what a retailer's agents are asked every day."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.answers.models import Answer
from omnicanal.answers.schemas import AnswerCreate
from omnicanal.answers.service import create_answer

DEMO_ANSWERS: list[AnswerCreate] = [
    AnswerCreate(
        language="es",
        shortcut="saludo",
        title="Saludo",
        tags=["saludo"],
        body="¡Hola {{customer.first_name}}! Soy {{agent.name}}, ¿en qué puedo ayudarte?",
    ),
    AnswerCreate(
        language="es",
        shortcut="horario",
        title="Horario de apertura de las tiendas",
        tags=["tiendas", "horario"],
        body=(
            "Nuestras tiendas abren de lunes a sábado de **10:00 a 21:00** y los domingos y festivos "
            "de **11:00 a 15:00**.\n\n"
            "Puedes consultar el horario de cada tienda en [nuestra web](https://www.omnicanal.demo/tiendas)."
        ),
    ),
    AnswerCreate(
        language="es",
        shortcut="devoluciones",
        title="Política de devoluciones",
        tags=["devoluciones", "reembolsos"],
        body=(
            "Tienes **30 días** desde la entrega para devolver tu compra, en cualquier tienda o por mensajería "
            "gratuita:\n\n"
            "- El producto debe estar sin usar y con su etiqueta.\n"
            "- Ten a mano el ticket o el número de pedido.\n"
            "- Te devolvemos el dinero en el mismo medio de pago en un máximo de 14 días.\n\n"
            "Más información en [omnicanal.demo/devoluciones](https://www.omnicanal.demo/devoluciones)."
        ),
    ),
    AnswerCreate(
        language="es",
        shortcut="pedido",
        title="¿Dónde está mi pedido? Estado del pedido",
        tags=["pedidos", "envíos"],
        body=(
            "Hola {{customer.first_name}}, tu pedido **{{order.number}}** ya está en camino y lo recibirás "
            "en 24-48 horas laborables.\n"
            "Puedes seguir el envío en [tu cuenta](https://www.omnicanal.demo/cuenta/pedidos)."
        ),
    ),
    AnswerCreate(
        language="es",
        shortcut="recogida",
        title="Recogida en tienda",
        tags=["tiendas", "pedidos", "click and collect"],
        body=(
            "Tu pedido **{{order.number}}** estará listo para recoger en la tienda que elegiste en cuanto "
            "recibas nuestro aviso por SMS o email.\n\n"
            "- Trae tu DNI y el número de pedido.\n"
            "- Lo guardamos *15 días*; después se anula y te devolvemos el importe."
        ),
    ),
    AnswerCreate(
        language="en",
        shortcut="hello",
        title="Greeting",
        tags=["greeting"],
        body="Hi {{customer.first_name}}! I'm {{agent.name}}, how can I help you today?",
    ),
    AnswerCreate(
        language="en",
        shortcut="hours",
        title="Store opening hours",
        tags=["stores", "hours"],
        body=(
            "Our stores are open Monday to Saturday from **10:00 to 21:00**, and on Sundays and public holidays "
            "from **11:00 to 15:00**.\n\n"
            "Check each store's hours on [our website](https://www.omnicanal.demo/stores)."
        ),
    ),
    AnswerCreate(
        language="en",
        shortcut="returns",
        title="Return policy",
        tags=["returns", "refunds"],
        body=(
            "You have **30 days** from delivery to return your purchase, in any store or by free courier:\n\n"
            "- The item must be unused and keep its label.\n"
            "- Keep your receipt or order number at hand.\n"
            "- We refund you on the same payment method within 14 days.\n\n"
            "More at [omnicanal.demo/returns](https://www.omnicanal.demo/returns)."
        ),
    ),
    AnswerCreate(
        language="en",
        shortcut="order",
        title="Where is my order? Order status",
        tags=["orders", "shipping"],
        body=(
            "Hi {{customer.first_name}}, your order **{{order.number}}** is on its way and will arrive within "
            "1-2 working days.\n"
            "You can track it in [your account](https://www.omnicanal.demo/account/orders)."
        ),
    ),
    AnswerCreate(
        language="en",
        shortcut="pickup",
        title="Store pickup",
        tags=["stores", "click and collect"],
        body=(
            "Your purchase **{{order.number}}** will be ready to collect at the store you chose as soon as you get "
            "our SMS or email.\n\n"
            "- Bring an ID and the confirmation number.\n"
            "- We keep it for *15 days*; after that it is cancelled and refunded."
        ),
    ),
]


def load_demo_answers(session: Session, actor: str) -> list[Answer]:
    """Create the demo answers that are not there yet (matched by language and shortcut)."""
    existing = {
        (language, shortcut) for language, shortcut in session.execute(select(Answer.language, Answer.shortcut))
    }
    created = []
    for data in DEMO_ANSWERS:
        if (data.language, data.shortcut) not in existing:
            created.append(create_answer(session, data=data, actor=actor))
    return created
