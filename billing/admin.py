"""Operator admin for usage and invoices: records are read-only (billing history is never edited
by hand); invoices are (re)generated from records and downloadable as CSV or PDF."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from billing.invoices import invoice_csv, invoice_generate, invoice_pdf
from billing.models import Invoice, InvoiceLine, UsageRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "tenant", "model", "status", "reason", "prompt_tokens", "completion_tokens",
                    "cost", "ttft_s", "duration_s", "created_at")
    list_filter = ("status", "endpoint", "stream", "tenant")
    search_fields = ("request_id", "tenant__slug", "model")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ("model", "requests", "input_tokens", "price_per_1k_input_tokens", "input_amount", "output_tokens",
              "price_per_1k_output_tokens", "output_amount", "amount")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("number", "tenant", "period_start", "requests", "input_tokens", "output_tokens", "amount_due",
                    "currency", "open_records", "generated_at", "downloads")
    list_filter = ("period_start", "tenant")
    search_fields = ("number", "tenant__slug")
    list_select_related = ("tenant",)
    inlines = [InvoiceLineInline]
    actions = ["regenerate"]

    def has_change_permission(self, request, obj=None):  # viewable (with inlines), still not editable
        return False

    def get_urls(self):
        urls = super().get_urls()
        download = self.admin_site.admin_view(self.download)
        return [path("<int:pk>/download.<str:fmt>", download, name="billing_invoice_download")] + urls

    @admin.display(description="Export")
    def downloads(self, obj):
        csv_url = reverse("admin:billing_invoice_download", args=[obj.pk, "csv"])
        pdf_url = reverse("admin:billing_invoice_download", args=[obj.pk, "pdf"])
        return format_html('<a href="{}">CSV</a> · <a href="{}">PDF</a>', csv_url, pdf_url)

    def download(self, request, pk: int, fmt: str):
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        invoice = get_object_or_404(Invoice.objects.select_related("tenant"), pk=pk)
        if fmt == "csv":
            response = HttpResponse(invoice_csv(invoice=invoice), content_type="text/csv")
        elif fmt == "pdf":
            response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
        else:
            return HttpResponse(status=404)
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.{fmt}"'
        return response

    @admin.action(description="Regenerate from usage records")
    def regenerate(self, request, queryset):
        for invoice in queryset.select_related("tenant"):
            month = invoice.period_start.year * 100 + invoice.period_start.month
            invoice_generate(tenant=invoice.tenant, month=month)
        self.message_user(request, f"Regenerated {queryset.count()} invoice(s).", messages.SUCCESS)
