from django.urls import path

from . import views

# Mounted under "v1/" in config/urls.py. Ids are plain strings here so a malformed one gets an
# OpenAI-shaped 400 from the view rather than Django's HTML 404.
urlpatterns = [
    path("conversations", views.ConversationListView.as_view()),
    path("conversations/<str:conversation_id>", views.ConversationDetailView.as_view()),
    path("conversations/<str:conversation_id>/messages", views.MessageListView.as_view()),
]
