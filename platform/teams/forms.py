"""Portal forms: sign-up, a team, a token."""

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from teams.models import ApiToken


class SignUpForm(UserCreationForm):
    email = forms.EmailField(help_text="For password resets only.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class TeamForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Shown on the leaderboard.")


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="cli", help_text="Where you will use it, e.g. 'laptop'.")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.SUBMIT)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False,
                                         help_text="Empty: never expires.")
