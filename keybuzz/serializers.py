from __future__ import annotations

from rest_framework import serializers

from keybuzz.models import Membership, Role


class TokenObtainInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    tenant = serializers.SlugField(max_length=63, required=False, help_text="Tenant slug, when the user has several.")


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenRefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class TenantSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.SlugField()
    name = serializers.CharField()


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email", help_text="May be empty.")
    name = serializers.SerializerMethodField()
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "name", "role"]

    def get_name(self, membership: Membership) -> str:
        return membership.user.get_full_name() or membership.user.username


class MeSerializer(serializers.Serializer):
    user = serializers.DictField()
    tenant = TenantSerializer()
    role = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "error"])
    checks = serializers.DictField(child=serializers.CharField())
    version = serializers.CharField()
