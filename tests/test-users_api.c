/* placeholder: tests for users_api are being written */
int main(void) {
        return 77;
}
