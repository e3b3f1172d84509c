from django.urls import path

from . import views

urlpatterns = [
    path("models", views.list_models),
    path("models/<path:model_id>", views.retrieve_model),
    path("chat/completions", views.chat_completions),
    path("completions", views.completions),
]
